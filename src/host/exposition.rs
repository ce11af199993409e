//! A parser for the Prometheus text exposition format (and the OpenMetrics text that
//! prometheus_client and promhttp also serve): a scanner over each line following the format's
//! grammar, `name{label="value",…} value [timestamp]`, comments (`# HELP`, `# TYPE`,
//! `# EOF`) skipped, escaped label values, and NaN / ±Inf. Used to read a target's own /metrics.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name.
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// A whole exposition: its samples in order (`# HELP` / `# TYPE` comments are not needed:
/// the names read from it are known).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The sum of a metric's samples over all label sets (None when it is absent).
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }
}

/// What is wrong with a line, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// The line.
    pub line: usize,
    /// The column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> Scanner<'a> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line,
            column: self.at + 1,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(format!("expected `{}`", c as char))
        }
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (label names: the same without `:`).
    fn name(&mut self, colon: bool) -> Result<String, ParseError> {
        let start = self.at;
        while let Some(c) = self.peek() {
            let ok = c.is_ascii_alphabetic()
                || c == b'_'
                || (colon && c == b':')
                || (self.at > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.at += 1;
        }
        if self.at == start {
            return self.fail("expected a name");
        }
        Ok(String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    /// A double-quoted label value with `\\`, `\"` and `\n` escapes.
    fn quoted(&mut self) -> Result<String, ParseError> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return self.fail("unterminated label value"),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'n') => out.push(b'\n'),
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'"') => out.push(b'"'),
                        _ => return self.fail("unknown escape in a label value"),
                    }
                    self.at += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn labels(&mut self) -> Result<Vec<(String, String)>, ParseError> {
        let mut labels = Vec::new();
        if self.peek() != Some(b'{') {
            return Ok(labels);
        }
        self.at += 1;
        loop {
            self.skip_blanks();
            if self.peek() == Some(b'}') {
                self.at += 1;
                return Ok(labels);
            }
            let name = self.name(false)?;
            self.skip_blanks();
            self.expect(b'=')?;
            self.skip_blanks();
            let value = self.quoted()?;
            labels.push((name, value));
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {}
                _ => return self.fail("expected `,` or `}` after a label"),
            }
        }
    }

    /// A token up to the next blank or the end.
    fn token(&mut self) -> &'a str {
        let start = self.at;
        while !matches!(self.peek(), None | Some(b' ' | b'\t')) {
            self.at += 1;
        }
        std::str::from_utf8(&self.text[start..self.at]).unwrap_or("")
    }
}

fn float(token: &str) -> Option<f64> {
    match token {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse().ok(),
    }
}

/// Parses a whole exposition; the first malformed line is an error.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let mut s = Scanner {
            text: line.as_bytes(),
            at: 0,
            line: i + 1,
        };
        s.skip_blanks();
        match s.peek() {
            None => continue,
            Some(b'#') => continue,
            Some(_) => {}
        }
        let name = s.name(true)?;
        let labels = s.labels()?;
        s.skip_blanks();
        let token = s.token();
        let Some(value) = float(token) else {
            return s.fail(format!("`{token}` is not a sample value"));
        };
        s.skip_blanks();
        let timestamp = s.token();
        if !timestamp.is_empty() && timestamp.parse::<f64>().is_err() {
            return s.fail(format!("`{timestamp}` is not a timestamp"));
        }
        s.skip_blanks();
        // OpenMetrics exemplars (` # {…} value`) follow; they are not needed here.
        if s.peek().is_some_and(|c| c != b'#') {
            return s.fail("unexpected text after the sample");
        }
        out.samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_text_format() {
        let text = "# HELP process_cpu_seconds_total Total user and system CPU time.\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 1.25\n\
                    # TYPE python_gc_objects_collected_total counter\n\
                    python_gc_objects_collected_total{generation=\"0\"} 120.0\n\
                    python_gc_objects_collected_total{generation=\"1\"} 30.0\n\
                    http_requests_total{method=\"post\",code=\"200\",} 1027 1395066363000\n\
                    odd{path=\"C:\\\\dir\\\\\",quote=\"a\\\"b\",nl=\"x\\ny\"} NaN\n\
                    inf +Inf\n\
                    # EOF\n";
        let e = parse(text).unwrap();
        assert_eq!(e.sum("process_cpu_seconds_total"), Some(1.25));
        assert_eq!(e.sum("python_gc_objects_collected_total"), Some(150.0));
        assert_eq!(e.sum("absent"), None);
        let http = &e.samples[3];
        assert_eq!(
            http.labels,
            vec![
                ("method".into(), "post".into()),
                ("code".into(), "200".into())
            ]
        );
        let odd = &e.samples[4];
        assert_eq!(odd.labels[0].1, "C:\\dir\\");
        assert_eq!(odd.labels[1].1, "a\"b");
        assert_eq!(odd.labels[2].1, "x\ny");
        assert!(odd.value.is_nan());
        assert_eq!(e.samples[5].value, f64::INFINITY);
    }

    #[test]
    fn malformed_lines_are_errors_with_their_place() {
        let e = parse("ok 1\nbad{x=1} 2\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7));
        assert!(parse("m{x=\"open} 1\n").is_err());
        assert!(parse("m one\n").is_err());
        assert!(parse("m 1 2 3\n").is_err());
        assert!(parse("9m 1\n").is_err());
    }
}
