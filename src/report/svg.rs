//! Minimal SVG line charts: axes with round-number ticks, polylines, a legend. Enough for
//! the report's plots, with nothing to load at view time (no JavaScript, no fonts).

use std::fmt::Write;

/// The first series' color.
pub const BLUE: &str = "#1f6fb2";
/// The second's.
pub const ORANGE: &str = "#e07b00";
/// For failures and limits.
pub const RED: &str = "#c62828";
/// For what passed.
pub const GREEN: &str = "#2e7d32";
/// For guides.
pub const GRAY: &str = "#888888";
/// One color per group when several are overlaid.
pub const PALETTE: [&str; 6] = [BLUE, ORANGE, GREEN, RED, "#6a3d9a", "#8c564b"];

#[derive(Debug)]
/// One line of a chart.
pub struct Series {
    /// Its legend.
    pub name: String,
    /// Its color.
    pub color: &'static str,
    /// Its points, (x, y).
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is drawn.
#[derive(Debug)]
pub enum XAxis {
    /// Plain numbers (seconds).
    Linear,
    /// HdrHistogram's percentile axis: x = log10(1 / (1 - q)), labelled 0%, 90%, 99%, …
    Percentile,
}

#[derive(Debug)]
/// A line chart.
pub struct Chart {
    /// Its title.
    pub title: String,
    /// The x axis's label.
    pub x_label: String,
    /// The y axis's label.
    pub y_label: String,
    /// How the x axis is drawn.
    pub x_axis: XAxis,
    /// Its lines.
    pub series: Vec<Series>,
    /// Lines across the plot at a value (a limit, a point found).
    pub marks: Vec<Mark>,
    /// Each point drawn as a dot too (few points, each a measurement: a search's steps).
    pub dots: bool,
}

/// A dashed line across the plot: vertical at an x value, or horizontal at a y value.
#[derive(Debug)]
pub struct Mark {
    /// Vertical (at an x) or horizontal (at a y).
    pub vertical: bool,
    /// Where.
    pub at: f64,
    /// Its label.
    pub label: String,
    /// Its color.
    pub color: &'static str,
}

const W: f64 = 860.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 160.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// Round-number ticks covering [lo, hi].
pub fn nice_ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / want.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let start = (lo / step).floor() * step;
    // Index-based, so ticks do not drift (0.30000000000000004); the last one reaches `hi`.
    let mut ticks = Vec::new();
    for k in 0..=50 {
        let t = ((start + k as f64 * step) / step).round() * step;
        ticks.push(t);
        if t >= hi - step * 1e-9 {
            break;
        }
    }
    ticks
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as SVG.
pub fn render(chart: &Chart) -> String {
    let pts = chart.series.iter().flat_map(|s| s.points.iter());
    let (mut x_hi, mut y_hi) = (0f64, 0f64);
    for &(x, y) in pts {
        x_hi = x_hi.max(x);
        y_hi = y_hi.max(y);
    }
    for m in &chart.marks {
        if m.vertical {
            x_hi = x_hi.max(m.at);
        } else {
            y_hi = y_hi.max(m.at);
        }
    }
    let x_ticks: Vec<(f64, String)> = match chart.x_axis {
        XAxis::Linear => nice_ticks(0.0, x_hi.max(1.0), 8)
            .into_iter()
            .map(|t| (t, fmt_num(t)))
            .collect(),
        XAxis::Percentile => {
            let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"];
            let n = (x_hi.ceil() as usize + 1).clamp(2, labels.len());
            (0..n).map(|i| (i as f64, labels[i].to_string())).collect()
        }
    };
    let x_max = x_ticks.last().map_or(1.0, |t| t.0).max(x_hi).max(1e-9);
    let y_ticks = nice_ticks(0.0, y_hi.max(1e-6) * 1.05, 6);
    let y_max = y_ticks.last().copied().unwrap_or(1.0).max(1e-9);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + x / x_max * pw;
    let sy = |y: f64| TOP + ph - y / y_max * ph;

    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"##
    );
    let _ = write!(o, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
    let _ = write!(
        o,
        r##"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"##,
        escape(&chart.title)
    );
    for &y in &y_ticks {
        let py = sy(y);
        let _ = write!(
            o,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e3e3e3"/>"##,
            LEFT + pw
        );
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            py + 4.0,
            fmt_num(y)
        );
    }
    for (x, label) in &x_ticks {
        let px = sx(*x);
        let _ = write!(
            o,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eeeeee"/>"##,
            TOP + ph
        );
        let _ = write!(
            o,
            r##"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph + 16.0,
            escape(label)
        );
    }
    let _ = write!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888888"/>"##
    );
    let _ = write!(
        o,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        H - 8.0,
        escape(&chart.x_label)
    );
    let _ = write!(
        o,
        r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"##,
        TOP + ph / 2.0,
        escape(&chart.y_label)
    );
    for (i, s) in chart.series.iter().enumerate() {
        if s.points.is_empty() {
            continue;
        }
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            o,
            r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            s.color,
            path.join(" ")
        );
        if s.points.len() == 1 || chart.dots {
            for &(x, y) in &s.points {
                let _ = write!(
                    o,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"##,
                    sx(x),
                    sy(y),
                    s.color
                );
            }
        }
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = LEFT + pw + 14.0;
        let _ = write!(
            o,
            r##"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="3"/>"##,
            lx + 18.0,
            s.color
        );
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}">{}</text>"##,
            lx + 24.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    for m in &chart.marks {
        let (x1, y1, x2, y2, tx, ty, anchor) = if m.vertical {
            let x = sx(m.at);
            (x, TOP, x, TOP + ph, x + 4.0, TOP + 14.0, "start")
        } else {
            let y = sy(m.at);
            (LEFT, y, LEFT + pw, y, LEFT + pw - 4.0, y - 5.0, "end")
        };
        let _ = write!(
            o,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="6 4"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" fill="{}">{}</text>"##,
            m.color,
            m.color,
            escape(&m.label)
        );
    }
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let t = nice_ticks(0.0, 0.37, 4);
        assert!(t.last().unwrap() >= &0.37 && t.len() <= 6, "{t:?}");
    }

    #[test]
    fn renders_series_and_legend() {
        let svg = render(&Chart {
            title: "t <1>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_axis: XAxis::Percentile,
            series: vec![Series {
                name: "p99".into(),
                color: "#c00",
                points: vec![(0.0, 1.0), (2.0, 5.0)],
            }],
            marks: Vec::new(),
            dots: false,
        });
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("t &lt;1&gt;") && svg.contains("99%") && svg.contains("<polyline"));
    }
}
