//! URLs a scenario or config names (an OTLP endpoint, a target's metrics endpoint), checked
//! once when read: they parse, have a host and one of the schemes loadagent speaks there.

/// Why a URL was refused: the URL as written, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{input}` is not a URL ({reason}); write it as \"{example}\"")]
    /// It does not parse as a URL.
    NotAUrl {
        /// As written.
        input: String,
        /// Why.
        reason: String,
        /// A URL that would do.
        example: &'static str,
    },
    #[error("`{input}`: only {schemes} URLs with a host are used here, as \"{example}\"")]
    /// Another scheme, or no host.
    Scheme {
        /// As written.
        input: String,
        /// The schemes taken.
        schemes: &'static str,
        /// A URL that would do.
        example: &'static str,
    },
}

/// Checks `input` is a URL with a host and a scheme in `allowed` (`schemes` says them in
/// words, `example` shows one).
pub fn check_url(
    input: &str,
    allowed: &[&str],
    schemes: &'static str,
    example: &'static str,
) -> Result<(), UrlError> {
    let uri: http::Uri = input
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::NotAUrl {
            input: input.to_string(),
            reason: e.to_string(),
            example,
        })?;
    match (uri.scheme_str(), uri.host()) {
        (Some(s), Some(_)) if allowed.contains(&s) => Ok(()),
        _ => Err(UrlError::Scheme {
            input: input.to_string(),
            schemes,
            example,
        }),
    }
}
