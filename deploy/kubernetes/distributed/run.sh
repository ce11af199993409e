#!/usr/bin/env bash
# A distributed run on Kubernetes, end to end:
#   [REMOTE_WRITE=URL] deploy/kubernetes/distributed/run.sh [SHARDS] [LEAD]
# SHARDS pods (default 4, one per node) run the scenario of configmap.yaml as one run, started
# together LEAD seconds from now (default 120: time to pull the image and connect); then a
# merge Job judges the thresholds on the whole. Exits with the merge's code: 0, 3 (a
# threshold failed), 2 (a shard's report is missing), 1 (the Job failed).
# With REMOTE_WRITE, every shard also pushes its series there (run --remote-write), so the
# figures of pods too short-lived to be scraped land in Prometheus.
# Needs kubectl with the namespace and service account of ../ (kubectl apply -k ..).
set -euo pipefail
cd "$(dirname "$0")"
SHARDS=${1:-4}
LEAD=${2:-120}
NS=loadagent
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || { echo "SHARDS must be a whole number from 1" >&2; exit 2; }
START_AT=$(date -u -d "+${LEAD} seconds" +%Y-%m-%dT%H:%M:%SZ)

# Waits until job $1 has ended; prints Complete or Failed.
ended() {
  local state
  while true; do
    state=$(kubectl -n "$NS" get job "$1" \
      -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case "$state" in
      *Complete*) echo Complete; return ;;
      *Failed*) echo Failed; return ;;
    esac
    sleep 5
  done
}

kubectl apply -f configmap.yaml -f results-pvc.yaml
# The live view, where prometheus-operator runs (its CRD): ignore the error elsewhere.
kubectl apply -f podmonitor.yaml 2>/dev/null || echo "no PodMonitor CRD: the live view is skipped"
kubectl -n "$NS" delete job loadagent-distributed loadagent-distributed-merge --ignore-not-found
# The start time is given once, here, to every shard; N in three places of the Job.
sed -e "s/^  completions: 4$/  completions: $SHARDS/" \
    -e "s/^  parallelism: 4$/  parallelism: $SHARDS/" \
    -e "/name: SHARDS/{n;s/value: \"4\"/value: \"$SHARDS\"/}" \
    -e "/name: START_AT/{n;s/value: \".*\"/value: \"$START_AT\"/}" \
    -e "${REMOTE_WRITE:+s|^            # - --remote-write\$|            - --remote-write|}" \
    -e "${REMOTE_WRITE:+s|^            # - http://prometheus.monitoring.svc:9090/api/v1/write\$|            - $REMOTE_WRITE|}" \
    job.yaml | kubectl apply -f -
echo "shards start at $START_AT"

if [ "$(ended loadagent-distributed)" != Complete ]; then
  echo "the distributed run failed (a shard's pod failed: see its logs):" >&2
  kubectl -n "$NS" describe job loadagent-distributed | tail -20 >&2
  exit 1
fi

# One report per shard, then merge.
files=$(for i in $(seq 0 $((SHARDS - 1))); do printf '            - /results/shard-%d.json\n' "$i"; done)
awk -v files="$files" '
  /- \/results\/shard-0.json/ { print files; skip = 1; next }
  skip && /- \/results\/shard-[0-9]+.json/ { next }
  { skip = 0; print }' merge-job.yaml | kubectl apply -f -
ended loadagent-distributed-merge > /dev/null
kubectl -n "$NS" logs job/loadagent-distributed-merge
code=$(kubectl -n "$NS" get pods -l job-name=loadagent-distributed-merge \
  -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
exit "${code:-1}"
