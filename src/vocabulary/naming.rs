//! Target names in gRPC's naming syntax (gRPC's `doc/naming.md`): a name that stands for a
//! changing set of backends, beside a plain `host:port` (one address, `HostPort`).
//!
//! - `dns:///NAME:PORT` — every A/AAAA record of NAME, from the system's resolver
//!   configuration (`/etc/resolv.conf`, `/etc/hosts`);
//! - `dns://SERVER:PORT/NAME:PORT` — the same from that DNS server;
//! - `dns+srv://[SERVER:PORT]/_SERVICE._PROTO.NAME` — SRV records (target host, port,
//!   weight), as Consul's DNS interface serves them; with no server, the system's.
//!
//! Only the syntax is checked here; resolving is `discovery`'s.

use std::fmt;

use super::HostPort;

/// A name that resolves to a set of backends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FleetName {
    /// As written, for messages, reports and the `target` label.
    text: String,
    /// The DNS server to ask; `None` for the system's configuration.
    pub server: Option<HostPort>,
    /// What is looked up.
    pub lookup: Lookup,
}

/// What is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// A and AAAA records of `host`, every address on `port`.
    Addresses {
        /// The name.
        host: String,
        /// The port every address is used on.
        port: u16,
    },
    /// SRV records of `name` (`_service._proto.domain`): each record's host and port.
    Services {
        /// The SRV name (`_grpc._tcp.svc.example`).
        name: String,
    },
}

/// Why a string is not a target name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{input}\" is not a target name ({reason}); write \"host:port\", \"dns:///NAME:PORT\", \"dns://DNS_SERVER:PORT/NAME:PORT\" or \"dns+srv://[DNS_SERVER:PORT]/_SERVICE._tcp.NAME\"")]
pub struct NameError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Longest DNS name (RFC 1035: 255 octets on the wire, 253 characters written).
const MAX_NAME: usize = 253;

impl FleetName {
    /// `Ok(None)` when `s` has no scheme (a plain `host:port`, parsed by `HostPort`).
    pub fn parse(s: &str) -> Result<Option<Self>, NameError> {
        let bad = |reason: &str| NameError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            if let Some((scheme, _)) = s.split_once(':') {
                if scheme == "dns" || scheme == "dns+srv" {
                    return Err(bad("the scheme needs \"://\", e.g. \"dns:///name:port\""));
                }
            }
            return Ok(None);
        };
        if scheme != "dns" && scheme != "dns+srv" {
            return Err(bad(&format!(
                "unknown scheme \"{scheme}\": the schemes are dns and dns+srv"
            )));
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no '/' before the name"))?;
        let server = if authority.is_empty() {
            None
        } else {
            let hp = HostPort::parse(authority).map_err(|e| {
                bad(&format!(
                    "the DNS server \"{authority}\" is not IP:PORT: {}",
                    e.reason
                ))
            })?;
            // A name for the DNS server would need a resolver to find the resolver.
            if hp.host().parse::<std::net::IpAddr>().is_err() {
                return Err(bad(&format!(
                    "the DNS server \"{authority}\" must be an IP address and port (e.g. \"10.0.0.10:53\", \"[::1]:53\")"
                )));
            }
            Some(hp)
        };
        let lookup = match scheme {
            "dns" => {
                let hp = HostPort::parse(path).map_err(|e| {
                    let hint = if e.reason == "no port" {
                        " (write the port: none is assumed)"
                    } else {
                        ""
                    };
                    bad(&format!("\"{path}\" is not NAME:PORT: {}{hint}", e.reason))
                })?;
                check_dns_name(hp.host(), false).map_err(|r| bad(&r))?;
                Lookup::Addresses {
                    host: hp.host().to_string(),
                    port: hp.port(),
                }
            }
            // "dns+srv", the only other scheme let through above.
            _ => {
                check_dns_name(path, true).map_err(|r| bad(&r))?;
                Lookup::Services {
                    name: path.to_string(),
                }
            }
        };
        Ok(Some(Self {
            text: s.to_string(),
            server,
            lookup,
        }))
    }

    /// The name TLS verifies and sends as SNI, and the default `:authority` host: the DNS
    /// name, never a backend's IP. For SRV, the name without its `_service._proto.` labels
    /// (`_grpc._tcp.api.service.consul` → `api.service.consul`).
    pub fn host(&self) -> &str {
        match &self.lookup {
            Lookup::Addresses { host, .. } => host,
            Lookup::Services { name } => service_domain(name),
        }
    }

    /// The default `:authority`: `NAME:PORT` for addresses (as gRPC's dns resolver), the
    /// domain for SRV.
    pub fn authority(&self) -> String {
        match &self.lookup {
            Lookup::Addresses { host, port } => format!("{host}:{port}"),
            Lookup::Services { name } => service_domain(name).to_string(),
        }
    }
}

/// `_svc._tcp.domain` → `domain`.
fn service_domain(name: &str) -> &str {
    let mut rest = name;
    for _ in 0..2 {
        match rest.split_once('.') {
            Some((label, tail)) if label.starts_with('_') => rest = tail,
            _ => break,
        }
    }
    rest.trim_end_matches('.')
}

/// A DNS name: labels of letters, digits, '-' and '_', 1 to 63 characters, at most 253 in
/// all; an SRV name starts with `_service._proto.`.
fn check_dns_name(name: &str, srv: bool) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("no name".into());
    }
    if trimmed.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "\"{name}\" has an empty label or one longer than 63 characters"
            ));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "\"{label}\" has characters a DNS name cannot have (letters, digits, '-' and '_' only)"
            ));
        }
    }
    if srv {
        let labels: Vec<&str> = trimmed.split('.').collect();
        let ok = labels.len() >= 3 && labels[0].starts_with('_') && labels[1].starts_with('_');
        if !ok {
            return Err(format!(
                "an SRV name is \"_SERVICE._PROTO.DOMAIN\" (e.g. \"_grpc._tcp.api.service.consul\"), not \"{name}\""
            ));
        }
    }
    Ok(())
}

impl fmt::Display for FleetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_parse_into_their_parts() {
        let n = FleetName::parse("dns:///api.internal:50051")
            .unwrap()
            .unwrap();
        assert_eq!(n.server, None);
        assert_eq!(
            n.lookup,
            Lookup::Addresses {
                host: "api.internal".into(),
                port: 50051
            }
        );
        assert_eq!(n.host(), "api.internal");
        assert_eq!(n.authority(), "api.internal:50051");
        assert_eq!(n.to_string(), "dns:///api.internal:50051");

        let n = FleetName::parse("dns://127.0.0.1:5353/api:443")
            .unwrap()
            .unwrap();
        assert_eq!(n.server, Some(HostPort::parse("127.0.0.1:5353").unwrap()));

        let n = FleetName::parse("dns+srv://127.0.0.1:8600/_grpc._tcp.api.service.consul")
            .unwrap()
            .unwrap();
        assert_eq!(
            n.lookup,
            Lookup::Services {
                name: "_grpc._tcp.api.service.consul".into()
            }
        );
        assert_eq!(n.host(), "api.service.consul");
        let n = FleetName::parse("dns+srv:///_grpc._tcp.api.")
            .unwrap()
            .unwrap();
        assert_eq!(n.server, None);
        assert_eq!(n.host(), "api");

        assert_eq!(FleetName::parse("127.0.0.1:50051").unwrap(), None);
        assert_eq!(FleetName::parse("[::1]:50051").unwrap(), None);
    }

    #[test]
    fn bad_names_say_what_is_wrong() {
        for (input, says) in [
            ("http://api:80", "unknown scheme \"http\""),
            ("dns:api:80", "needs \"://\""),
            ("dns://", "no '/'"),
            ("dns:///api", "not NAME:PORT"),
            ("dns:///api:0", "port 0"),
            ("dns:///:80", "no host"),
            ("dns://1.2.3.4/api:80", "DNS server"),
            ("dns://dns.example:53/api:80", "must be an IP address"),
            ("dns:///a..b:80", "empty label"),
            ("dns:///a*b:80", "letters, digits"),
            ("dns+srv:///api.service.consul", "an SRV name is"),
            ("dns+srv:///", "no name"),
        ] {
            let e = FleetName::parse(input).unwrap_err();
            assert!(e.to_string().contains(says), "{input}: {e}");
            assert!(e.to_string().contains("dns:///NAME:PORT"), "{e}");
        }
        let long = format!("dns:///{}:80", "a.".repeat(130));
        assert!(FleetName::parse(&long)
            .unwrap_err()
            .reason
            .contains("longer"));
    }

    proptest! {
        /// No string makes the parser panic, and what parses prints back to itself.
        #[test]
        fn any_string_parses_or_is_refused(s in "(dns|dns\\+srv|x)?(:|://)?[a-z0-9_.:/\\[\\]-]{0,40}") {
            if let Ok(Some(n)) = FleetName::parse(&s) {
                prop_assert_eq!(n.to_string(), s);
                prop_assert!(!n.host().is_empty());
            }
        }
    }
}
