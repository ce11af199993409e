"""Reads an HdrHistogram interval log with the PyPI `hdrhistogram` package (not loadagent's
code) and prints, per tag, the percentiles of all its intervals merged, as JSON."""
import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

path = sys.argv[1]
merged = {}
reference = HdrHistogram(1, 3_600_000_000, 3)
reader = HistogramLogReader(path, reference)
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    tag = h.get_tag()
    if tag not in merged:
        merged[tag] = HdrHistogram(1, 3_600_000_000, 3)
    merged[tag].add(h)
out = {}
for tag, h in merged.items():
    out[tag] = {
        "count": h.get_total_count(),
        "p50_us": h.get_value_at_percentile(50),
        "p90_us": h.get_value_at_percentile(90),
        "p99_us": h.get_value_at_percentile(99),
        "max_us": h.get_max_value(),
        "min_us": h.get_min_value(),
    }
print(json.dumps(out))
