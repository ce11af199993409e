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
/// regard to case (the pattern is lower-cased when read).
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == host,
        Some((head, tail)) => {
            let Some(rest) = host.strip_prefix(head) else {
                return false;
            };
            // The star takes at least one character, then the tail must match what remains
            // (with its own stars): try every split.
            (1..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| host_matches(tail, &rest[i..]))
        }
    }
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
