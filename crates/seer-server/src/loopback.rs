//! Without a token the server trusts whoever reaches its loopback address. A web
//! page from elsewhere can, through the user's browser: by DNS rebinding (its own
//! name made to resolve to 127.0.0.1, so its scripts read the answers — the
//! user's photos) or by a form that POSTs across sites (starting a re-index). So
//! a server without a token answers only requests addressed to a loopback name
//! (`Host`) and, when the browser says which page made it (`Origin`), made by a
//! page served from a loopback name. With a token, the token decides.

use axum::http::{header, HeaderMap, StatusCode};

use crate::error::ApiError;

/// `Ok` when a tokenless server may answer a request with these headers.
pub fn check(headers: &HeaderMap) -> Result<(), ApiError> {
    let forbidden = |m: String| Err(ApiError::new(StatusCode::FORBIDDEN, m));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(is_loopback_authority) {
        return forbidden(format!(
            "without --token this server answers only requests addressed to localhost or a loopback address, not {}",
            host.unwrap_or("a request without Host")
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(is_loopback_authority) {
            return forbidden(format!(
                "without --token this server answers no requests made by pages of other sites ({origin})"
            ));
        }
    }
    Ok(())
}

/// `host[:port]` naming this machine: `localhost` (or a name under it), or a
/// loopback IP address (IPv6 in brackets).
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port) => ip,
            _ => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        }
    };
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .unwrap_or(s)
        .bytes()
        .all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_only() {
        for ok in [
            "localhost",
            "localhost:7860",
            "LOCALHOST.:1",
            "app.localhost:80",
            "127.0.0.1:7860",
            "127.1.2.3",
            "[::1]:7860",
            "[::1]",
        ] {
            assert!(is_loopback_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7860",
            "localhost.evil.example",
            "127.0.0.1.nip.io:7860",
            "10.0.0.1:7860",
            "[::2]:7860",
            "[::1]x",
            "localhost:x",
            "",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }
}
