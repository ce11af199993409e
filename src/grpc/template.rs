//! Request templates: `{{request_number}}`, `{{worker_id}}`, `{{uuid}}`,
//! `{{random_int(1, 100)}}`, `{{random_string(16)}}`, `{{random_choice(a, b, c)}}`,
//! `{{timestamp_unix_ms}}`, `{{timestamp_rfc3339}}` inside the string values of a request and
//! its metadata values. Parsed once, before the run; rendered per request.

use std::fmt::Write;

use rand::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    RequestNumber,
    WorkerId,
    Uuid,
    RandomInt(i64, i64),
    RandomString(usize),
    RandomChoice(Vec<String>),
    TimestampUnixMs,
    TimestampRfc3339,
}

/// `random_choice`: at most this many items, each at most `MAX_CHOICE_LEN` bytes.
const MAX_CHOICES: usize = 256;
const MAX_CHOICE_LEN: usize = 1024;
/// `2026-12-06T18:40:01.123Z`: UTC, milliseconds.
const RFC3339_LEN: usize = 24;

/// A string with placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a rendering may draw on.
#[derive(Debug)]
pub struct Context<'a, R: Rng> {
    /// `{{request_number}}`.
    pub request_number: u64,
    /// `{{worker_id}}`.
    pub worker_id: usize,
    /// Where random values come from.
    pub rng: &'a mut R,
}

const FUNCTIONS: &str = "request_number, worker_id, uuid, random_int(min, max), random_string(length), random_choice(a, b, …), timestamp_unix_ms, timestamp_rfc3339";

fn args(call: &str, name: &str) -> Option<Vec<String>> {
    let inner = call
        .strip_prefix(name)?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    Some(inner.split(',').map(|a| a.trim().to_string()).collect())
}

impl Template {
    /// Parses `text`; `None` when it has no placeholder (a plain string).
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        if !text.contains("{{") {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("`{{{{` without `}}}}` in \"{text}\""))?;
            parts.push(Self::placeholder(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Some(Self { parts }))
    }

    fn placeholder(p: &str) -> Result<Part, String> {
        let bad = || format!("`{{{{{p}}}}}` is not a template function; valid: {FUNCTIONS}");
        Ok(match p {
            "request_number" => Part::RequestNumber,
            "worker_id" => Part::WorkerId,
            "uuid" => Part::Uuid,
            "timestamp_unix_ms" => Part::TimestampUnixMs,
            "timestamp_rfc3339" => Part::TimestampRfc3339,
            _ => {
                if let Some(a) = args(p, "random_int") {
                    let nums: Vec<i64> = a.iter().filter_map(|x| x.parse().ok()).collect();
                    match nums[..] {
                        [lo, hi] if a.len() == 2 && lo <= hi => Part::RandomInt(lo, hi),
                        _ => return Err(format!("`{p}`: random_int takes two whole numbers, min <= max, e.g. random_int(1, 100)")),
                    }
                } else if let Some(a) = args(p, "random_string") {
                    match a.as_slice() {
                        [n] => match n.parse::<usize>() {
                            Ok(n) if (1..=65536).contains(&n) => Part::RandomString(n),
                            _ => {
                                return Err(format!(
                                    "`{p}`: random_string takes a length from 1 to 65536"
                                ))
                            }
                        },
                        _ => {
                            return Err(format!(
                                "`{p}`: random_string takes one length, e.g. random_string(16)"
                            ))
                        }
                    }
                } else if let Some(items) = args(p, "random_choice") {
                    if items.is_empty()
                        || items.len() > MAX_CHOICES
                        || items
                            .iter()
                            .any(|i| i.is_empty() || i.len() > MAX_CHOICE_LEN)
                    {
                        return Err(format!(
                            "`{p}`: random_choice takes 1 to {MAX_CHOICES} items, each 1 to {MAX_CHOICE_LEN} bytes without commas, e.g. random_choice(red, green, blue)"
                        ));
                    }
                    Part::RandomChoice(items)
                } else {
                    return Err(bad());
                }
            }
        })
    }

    /// The most bytes a rendering can take (numbers at their widest).
    pub fn max_len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::RequestNumber | Part::WorkerId | Part::TimestampUnixMs => 20,
                Part::RandomInt(..) => 20,
                Part::Uuid => 36,
                Part::RandomString(n) => *n,
                Part::RandomChoice(items) => items.iter().map(String::len).max().unwrap_or(0),
                Part::TimestampRfc3339 => RFC3339_LEN,
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Renders the template into `out` (cleared first).
    pub fn render<R: Rng>(&self, ctx: &mut Context<'_, R>, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::RequestNumber => {
                    let _ = write!(out, "{}", ctx.request_number);
                }
                Part::WorkerId => {
                    let _ = write!(out, "{}", ctx.worker_id);
                }
                Part::Uuid => {
                    let mut b: [u8; 16] = ctx.rng.random();
                    b[6] = (b[6] & 0x0f) | 0x40; // version 4
                    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
                    for (i, byte) in b.iter().enumerate() {
                        if matches!(i, 4 | 6 | 8 | 10) {
                            out.push('-');
                        }
                        let _ = write!(out, "{byte:02x}");
                    }
                }
                Part::RandomInt(lo, hi) => {
                    let _ = write!(out, "{}", ctx.rng.random_range(*lo..=*hi));
                }
                Part::RandomString(n) => {
                    const ALPHABET: &[u8] =
                        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                    for _ in 0..*n {
                        out.push(ALPHABET[ctx.rng.random_range(0..ALPHABET.len())] as char);
                    }
                }
                Part::TimestampUnixMs => {
                    let ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis());
                    let _ = write!(out, "{ms}");
                }
                Part::RandomChoice(items) => {
                    out.push_str(&items[ctx.rng.random_range(0..items.len())]);
                }
                Part::TimestampRfc3339 => {
                    let t = time::OffsetDateTime::now_utc();
                    let _ = write!(
                        out,
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                        t.year().clamp(0, 9999),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second(),
                        t.millisecond()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    proptest! {
        /// A rendering never takes more than `max_len`, the bound validation counts on.
        #[test]
        fn a_rendering_fits_its_bound(
            text in "([a-z ]{0,5}|\\{\\{(request_number|worker_id|uuid|timestamp_unix_ms|random_int\\(-9223372036854775808, 9223372036854775807\\)|random_int\\(-5, 5\\)|random_string\\([1-9][0-9]{0,2}\\)|random_choice\\([a-z]{1,9}(, [a-z]{1,9}){0,3}\\)|timestamp_rfc3339)\\}\\}){0,6}",
            n in any::<u64>(),
            worker in any::<usize>(),
            seed in any::<u64>(),
        ) {
            if let Ok(Some(t)) = Template::parse(&text) {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut out = String::new();
                t.render(&mut Context { request_number: n, worker_id: worker, rng: &mut rng }, &mut out);
                prop_assert!(out.len() <= t.max_len(), "{} > {} for {text}", out.len(), t.max_len());
            }
        }
    }

    fn render(t: &str, n: u64) -> String {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut out = String::new();
        Template::parse(t).unwrap().unwrap().render(
            &mut Context {
                request_number: n,
                worker_id: 3,
                rng: &mut rng,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn placeholders_render() {
        assert_eq!(
            render("req-{{request_number}}/w{{ worker_id }}", 42),
            "req-42/w3"
        );
        let v: i64 = render("{{random_int(5, 9)}}", 0).parse().unwrap();
        assert!((5..=9).contains(&v));
        let s = render("{{random_string(16)}}", 0);
        assert!(s.len() == 16 && s.chars().all(|c| c.is_ascii_alphanumeric()));
        let u = render("{{uuid}}", 0);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4", "version 4: {u}");
        assert!(render("{{timestamp_unix_ms}}", 0).parse::<u128>().unwrap() > 1_600_000_000_000);
        let picked: std::collections::BTreeSet<String> = (0..200)
            .map(|n| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(n);
                let mut out = String::new();
                Template::parse("{{random_choice(red, green,blue)}}")
                    .unwrap()
                    .unwrap()
                    .render(
                        &mut Context {
                            request_number: n,
                            worker_id: 0,
                            rng: &mut rng,
                        },
                        &mut out,
                    );
                out
            })
            .collect();
        assert_eq!(
            picked.into_iter().collect::<Vec<_>>(),
            ["blue", "green", "red"],
            "every item drawn, nothing else"
        );
        let t = render("{{timestamp_rfc3339}}", 0);
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                .is_ok_and(|d| d.year() >= 2026),
            "{t}"
        );
        assert_eq!(t.len(), RFC3339_LEN, "{t}");
    }

    #[test]
    fn plain_strings_and_bad_templates() {
        assert_eq!(Template::parse("plain"), Ok(None));
        assert!(Template::parse("{{nope}}")
            .unwrap_err()
            .contains("valid: request_number"));
        assert!(Template::parse("{{random_int(9, 1)}}")
            .unwrap_err()
            .contains("min <= max"));
        assert!(Template::parse("{{random_string(0)}}")
            .unwrap_err()
            .contains("1 to 65536"));
        assert!(Template::parse("{{uuid").unwrap_err().contains("without"));
        for bad in ["{{random_choice()}}", "{{random_choice(a,,b)}}"] {
            assert!(
                Template::parse(bad)
                    .unwrap_err()
                    .contains("random_choice takes"),
                "{bad}"
            );
        }
    }
}
