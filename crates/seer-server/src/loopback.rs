//! Without a token the server trusts whoever reaches its loopback address. A web
//! page from elsewhere can, through the user's browser: by DNS rebinding (its own
//! name made to resolve to 127.0.0.1, so its scripts read the answers — the
//! user's photos) or by a form that POSTs across sites (starting a re-index). So
//! a server without a token answers only requests addressed to a loopback name
//! (`Host`) and, when the browser says which page made it (`Origin`), made by a
//! page served from a loopback name. With a token, the token decides.

use axum::http::{header, HeaderMap, StatusCode, Uri};

use crate::error::ApiError;

/// `Ok` when a tokenless server may answer a request for `uri` with these
/// headers. Every name the request is addressed by must be a loopback one: each
/// `Host` header (a client that sends two must not get by with its first), and
/// the authority of an absolute-form target (`GET http://evil.example/ HTTP/1.1`),
/// which HTTP/1.1 says overrides `Host`. Likewise every `Origin` header.
pub fn check(uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let forbidden = |m: String| Err(ApiError::new(StatusCode::FORBIDDEN, m));
    let mut names: Vec<Option<&str>> = headers
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().ok())
        .collect();
    if let Some(authority) = uri.authority() {
        names.push(Some(authority.as_str()));
    }
    if names.is_empty() {
        return forbidden(
            "without --token this server answers only requests addressed to localhost or a loopback address, not a request without Host"
                .to_string(),
        );
    }
    for host in names {
        if !host.is_some_and(is_loopback_authority) {
            return forbidden(format!(
                "without --token this server answers only requests addressed to localhost or a loopback address, not {}",
                host.unwrap_or("a Host that is not text")
            ));
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
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

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn every_name_the_request_is_addressed_by_must_be_loopback() {
        let path: Uri = "/v1/search?q=x".parse().unwrap();
        let local = headers(&[(header::HOST, "localhost:7860")]);
        assert!(check(&path, &local).is_ok());
        assert!(check(&path, &HeaderMap::new()).is_err(), "no Host");
        // A second Host header naming another site is not hidden by the first.
        let two = headers(&[(header::HOST, "localhost"), (header::HOST, "evil.example")]);
        assert_eq!(
            check(&path, &two).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let both_local = headers(&[(header::HOST, "localhost"), (header::HOST, "127.0.0.1")]);
        assert!(check(&path, &both_local).is_ok());
        // An absolute-form target's authority overrides Host (RFC 9112 3.2.2).
        let absolute: Uri = "http://evil.example/v1/search?q=x".parse().unwrap();
        assert_eq!(
            check(&absolute, &local).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let absolute_local: Uri = "http://127.0.0.1:7860/v1/search".parse().unwrap();
        assert!(check(&absolute_local, &local).is_ok());
        assert!(check(&absolute_local, &HeaderMap::new()).is_ok());
        // Every Origin, not only the first.
        let origins = headers(&[
            (header::HOST, "localhost"),
            (header::ORIGIN, "http://localhost:7860"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(check(&path, &origins).is_err());
    }
}
