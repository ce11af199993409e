//! `host:port`, parsed once into a type: a host name, an IPv4 address or a bracketed IPv6
//! address, and a port. Scenarios, the agent's config, `probe` and the listen flags all read
//! addresses through it; everything after uses its parts, never splits the string again.

use std::fmt;
use std::str::FromStr;

/// An address to connect to or listen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Without brackets (`::1`), as SNI, verification and span attributes take it.
    host: String,
    port: u16,
}

/// Why a string is not a `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{input}\" is not an address ({reason}); write \"host:port\" (e.g. \"127.0.0.1:50051\", \"[::1]:50051\", \"svc.example:443\")")]
pub struct AddressError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl HostPort {
    /// An address to connect to: port 1 to 65535.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let hp = Self::parse_listen(s)?;
        if hp.port == 0 {
            return Err(AddressError {
                input: s.to_string(),
                reason: "port 0 cannot be connected to",
            });
        }
        Ok(hp)
    }

    /// An address to listen on: port 0 asks the system for a free one.
    pub fn parse_listen(s: &str) -> Result<Self, AddressError> {
        let bad = |reason| AddressError {
            input: s.to_string(),
            reason,
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        let host = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address between the brackets"))?;
            inner
        } else if host.is_empty() {
            return Err(bad("no host"));
        } else if host.contains(':') {
            return Err(bad("an IPv6 address needs brackets"));
        } else if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(bad(
                "a host name has letters, digits, '.', '-' and '_' only",
            ));
        } else {
            host
        };
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    /// The host (a name or an IP address; IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What to hand to `TcpStream::connect` or `lookup_host`.
    pub fn dial(&self) -> (&str, u16) {
        (&self.host, self.port)
    }
}

impl From<std::net::SocketAddr> for HostPort {
    fn from(a: std::net::SocketAddr) -> Self {
        Self {
            host: a.ip().to_string(),
            port: a.port(),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses_parse_into_their_parts_and_print_back() {
        for (s, host, port) in [
            ("127.0.0.1:50051", "127.0.0.1", 50051),
            ("[::1]:443", "::1", 443),
            ("svc.example-1_a:8080", "svc.example-1_a", 8080),
        ] {
            let hp = HostPort::parse(s).unwrap();
            assert_eq!((hp.host(), hp.port()), (host, port));
            assert_eq!(hp.to_string(), s);
        }
        for bad in [
            "",
            "svc",
            ":80",
            "svc:",
            "svc:70000",
            "::1:80",
            "[x]:80",
            "a b:80",
            "svc:0",
        ] {
            let e = HostPort::parse(bad).unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains("host:port"), "{e}");
        }
        assert_eq!(HostPort::parse_listen("0.0.0.0:0").unwrap().port(), 0);
        let v6: std::net::SocketAddr = "[::1]:9".parse().unwrap();
        assert_eq!(HostPort::from(v6).to_string(), "[::1]:9");
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused_and_what_parses_prints_back_to_itself(s in ".{0,40}") {
            if let Ok(hp) = HostPort::parse_listen(&s) {
                prop_assert_eq!(HostPort::parse_listen(&hp.to_string()), Ok(hp));
            }
        }
    }
}
