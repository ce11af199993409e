//! `[probe]` of the agent's config: the bounds of the `/probe` endpoint (how many probes at
//! once, which targets it may reach).

use std::net::IpAddr;

use crate::scenario::reader::TableReader;

/// Probes `/probe` runs at once when `[probe] max_concurrent` is not set: more are answered
/// 503 at once (Prometheus retries at the next scrape), so a burst of scrapes cannot make the
/// agent hold unbounded connections.
pub const DEFAULT_MAX_CONCURRENT: u64 = 32;

/// The largest `max_concurrent` taken.
pub const MAX_CONCURRENT_BOUND: u64 = 10_000;

/// `[probe]`: the bounds of the `/probe` endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// `max_concurrent`: probes in flight at once; more are answered 503.
    pub max_concurrent: u64,
    /// `allowed_targets`: what `/probe` may reach; empty = anything.
    pub allowed: Vec<Allowed>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            allowed: Vec::new(),
        }
    }
}

/// One `allowed_targets` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// An address range (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`): a target written as an IP in it.
    Network(ipnet::IpNet),
    /// A host name pattern (`*.svc.cluster.local`, `localhost`): a target written as a name
    /// that matches (`*` stands for one or more labels' worth of characters, never a dot-free
    /// whole: `*.x` does not match `x`).
    Host(String),
}

impl EndpointConfig {
    /// Whether `/probe` may reach `host` (as the target was written: an IP, or a name). A name
    /// is matched against host patterns only, an IP against networks only: an allowed name is
    /// trusted to point where its owner says (Kubernetes' DNS, a service's name).
    pub fn allows(&self, host: &str) -> bool {
        if self.allowed.is_empty() {
            return true;
        }
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        self.allowed.iter().any(|rule| match (rule, ip) {
            (Allowed::Network(net), Some(ip)) => net.contains(&ip),
            (Allowed::Host(pattern), None) => host_matches(pattern, &host.to_ascii_lowercase()),
            _ => false,
        })
    }
}

/// `*` matches one or more characters (dots too); everything else matches itself, without
/// regard to case (the pattern is lower-cased when read). Iterative, remembering only the last
/// star: time linear in the lengths' product at worst, whatever the stars (a recursive
/// matcher is exponential in them).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.as_bytes(), host.as_bytes());
    let (mut pi, mut hi) = (0, 0);
    // The last star seen, and where in the host its match ends (exclusive) so far.
    let mut star: Option<(usize, usize)> = None;
    while hi < h.len() {
        if pi < p.len() && p[pi] == b'*' {
            // A star takes at least one character.
            star = Some((pi, hi + 1));
            pi += 1;
            hi += 1;
        } else if pi < p.len() && p[pi] == h[hi] {
            pi += 1;
            hi += 1;
        } else if let Some((sp, end)) = star {
            // The last star takes one more character; try the rest of the pattern after it.
            pi = sp + 1;
            hi = end + 1;
            star = Some((sp, end + 1));
            if end + 1 > h.len() {
                return false;
            }
        } else {
            return false;
        }
    }
    p[pi..].is_empty()
}

/// Reads `[probe]`: `max_concurrent`, `allowed_targets`.
pub(super) fn read_endpoint(t: &TableReader<'_, '_, '_>) -> EndpointConfig {
    let max_concurrent = match t.integer("max_concurrent", 1) {
        None => DEFAULT_MAX_CONCURRENT,
        Some(n) if n.value > MAX_CONCURRENT_BOUND => {
            t.ctx().report_at(
                n.loc,
                &t.key_path("max_concurrent"),
                format!("at most {MAX_CONCURRENT_BOUND}: each probe holds a connection or two"),
            );
            DEFAULT_MAX_CONCURRENT
        }
        Some(n) => n.value,
    };
    let mut allowed = Vec::new();
    for entry in t.string_list("allowed_targets").unwrap_or_default() {
        match parse_allowed(&entry.value) {
            Ok(rule) => allowed.push(rule),
            Err(why) => t
                .ctx()
                .report_at(entry.loc, &t.key_path("allowed_targets"), why),
        }
    }
    t.finish();
    EndpointConfig {
        max_concurrent,
        allowed,
    }
}

fn parse_allowed(text: &str) -> Result<Allowed, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(Allowed::Network(net.trunc()));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Allowed::Network(ipnet::IpNet::from(ip)));
    }
    let valid = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_'));
    if valid && text.chars().any(|c| c != '*' && c != '.') {
        Ok(Allowed::Host(text.to_ascii_lowercase()))
    } else {
        Err(format!(
            "\"{text}\" is neither a network nor a host pattern; write a CIDR (\"10.0.0.0/8\", \"fd00::/8\"), an IP, or a host name with `*` for any part (\"*.svc.cluster.local\")"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(rules: &[&str]) -> EndpointConfig {
        EndpointConfig {
            max_concurrent: 1,
            allowed: rules.iter().map(|r| parse_allowed(r).unwrap()).collect(),
        }
    }

    #[test]
    fn networks_admit_ips_and_patterns_admit_names() {
        let e = endpoint(&["10.0.0.0/8", "127.0.0.2", "*.svc.cluster.local", "fd00::/8"]);
        assert!(e.allows("10.1.2.3"));
        assert!(e.allows("127.0.0.2"));
        assert!(!e.allows("127.0.0.3"));
        assert!(e.allows("[fd00::1]"));
        assert!(!e.allows("[::1]"));
        assert!(e.allows("api.prod.svc.cluster.local"));
        assert!(e.allows("API.prod.SVC.cluster.local"));
        assert!(
            !e.allows("svc.cluster.local"),
            "a star takes at least one character"
        );
        assert!(!e.allows("evil.com"));
        assert!(
            !e.allows("10.evil.com"),
            "a name is not matched against networks"
        );
        assert!(endpoint(&[]).allows("anything"), "no rules: everything");
    }

    #[test]
    fn patterns_match_as_written() {
        assert!(host_matches("localhost", "localhost"));
        assert!(!host_matches("localhost", "localhost.evil"));
        assert!(host_matches("a*b*c", "axxbyyc"));
        assert!(!host_matches("a*b*c", "abc"));
        assert!(host_matches("*", "x"));
        assert!(!host_matches("*", ""));
        assert!(host_matches("*.x", "a.b.x"));
        assert!(!host_matches("*.x", ".x"), "the star takes a character");
        assert!(host_matches("a*", "ab"));
        assert!(!host_matches("a*", "a"));
        assert!(host_matches("**", "ab"));
        assert!(!host_matches("**", "a"));
    }

    /// Stars against a host that almost matches (a recursive matcher takes exponential time
    /// here).
    #[test]
    fn many_stars_cost_little() {
        let pattern = "*a".repeat(30) + "b";
        let host = "a".repeat(250);
        // Returns at once; the recursive matcher this replaced did not return in a day.
        assert!(!host_matches(&pattern, &host));
    }

    proptest::proptest! {
        /// The iterative matcher agrees with a plain recursive one on small inputs.
        #[test]
        fn the_matcher_agrees_with_the_definition(
            pattern in "[ab.*]{0,6}",
            host in "[ab.]{0,8}",
        ) {
            fn by_definition(p: &[u8], h: &[u8]) -> bool {
                match p.split_first() {
                    None => h.is_empty(),
                    Some((b'*', rest)) => (1..=h.len()).any(|i| by_definition(rest, &h[i..])),
                    Some((c, rest)) => h.first() == Some(c) && by_definition(rest, &h[1..]),
                }
            }
            proptest::prop_assert_eq!(
                host_matches(&pattern, &host),
                by_definition(pattern.as_bytes(), host.as_bytes())
            );
        }
    }

    #[test]
    fn bad_rules_say_what_to_write() {
        for bad in ["", "*", "10.0.0.0/33", "a b", "*.*", "http://x"] {
            let e = parse_allowed(bad).unwrap_err();
            assert!(e.contains("CIDR"), "{bad}: {e}");
        }
        assert_eq!(
            parse_allowed("10.1.2.3/8").unwrap(),
            Allowed::Network("10.0.0.0/8".parse().unwrap())
        );
    }
}
