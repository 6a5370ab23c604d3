//! Without a token the server trusts whoever reaches its loopback address. A web
//! page from elsewhere can, through the user's browser: by DNS rebinding (its own
//! name made to resolve to 127.0.0.1, so its scripts read the answers — the
//! user's photos) or by a form that POSTs across sites (starting a re-index). So
//! a server without a token answers only requests addressed to a loopback name
//! (`Host`) and, when the browser says which page made it (`Origin`), made by
//! this server's own page: the origin names the same host and port as the
//! request (a page on another port of localhost is another program's, and an
//! old browser that sends no `Sec-Fetch-Site` would otherwise let its POSTs
//! through). With a token, the token decides.
//!
//! A page can also make the browser send requests that carry no `Origin`: an
//! `<img>` or `<script>` tag, a link, a GET form. Such a request cannot read the
//! answer, but its success or failure (an image's `onload` or `onerror`) tells
//! which photo ids exist, and each one costs the server work. Browsers say who
//! made every request in `Sec-Fetch-Site`, so a tokenless server answers only
//! its own page's requests (`same-origin`), what the user typed or bookmarked
//! (`none`) and clients that send no such header (curl, scripts); `same-site`
//! is refused too, since a page on another port of localhost is another
//! origin. A link from elsewhere may still open the page itself.

use axum::http::{header, HeaderMap, Method, StatusCode, Uri};

use crate::error::ApiError;

/// `Ok` when a tokenless server may answer a request for `uri` with these
/// headers. Every name the request is addressed by must be a loopback one: each
/// `Host` header (a client that sends two must not get by with its first), and
/// the authority of an absolute-form target (`GET http://evil.example/ HTTP/1.1`),
/// which HTTP/1.1 says overrides `Host`. Every `Origin` header must name the
/// same host and port as each of those names (the page is this server's), and
/// every `Sec-Fetch-Site` header pass [`fetched_by_this_page`].
pub fn check(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
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
    let mut addressed = Vec::with_capacity(names.len());
    for host in names {
        // A Host names no scheme: this server speaks plain HTTP. A port past
        // 65535 names nothing (and would leave no name to compare with).
        match host.and_then(|h| loopback_name(h, 80)) {
            Some(name) => addressed.push(name),
            None => {
                return forbidden(format!(
                    "without --token this server answers only requests addressed to localhost or a loopback address, not {}",
                    host.unwrap_or("a Host that is not text")
                ))
            }
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let page = origin
            .strip_prefix("http://")
            .map(|authority| (authority, 80))
            .or_else(|| origin.strip_prefix("https://").map(|a| (a, 443)))
            .and_then(|(authority, port)| loopback_name(authority, port));
        let Some(page) = page else {
            return forbidden(format!(
                "without --token this server answers no requests made by pages of other sites ({origin})"
            ));
        };
        if !addressed.iter().all(|name| *name == page) {
            return forbidden(format!(
                "without --token this server answers only its own page's requests, not ones made by a page of {origin} (another port or name); open its page (/) directly, or give the server a --token"
            ));
        }
    }
    fetched_by_this_page(method, uri, headers)
}

/// The page a browser may open from a link on another site (or another port).
const PAGE: &str = "/";

/// `Ok` unless a browser says another page made the request: every
/// `Sec-Fetch-Site` must be `same-origin` or `none` (none at all is a client
/// that is no browser, or an old one; `Origin` still covers the latter's
/// POSTs). The one exception is a top-level navigation to the page: following
/// a link to the UI shows it in its own tab, where the other page reads
/// nothing, and the page's own requests are then `same-origin`. Frames are no
/// such navigation (a page could lay this one under its own clicks).
fn fetched_by_this_page(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let all = |name: &str| -> Vec<Option<&str>> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().ok())
            .collect()
    };
    let is_only = |values: &[Option<&str>], wanted: &str| {
        !values.is_empty()
            && values
                .iter()
                .all(|v| v.is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted)))
    };
    let sites = all("sec-fetch-site");
    let foreign = sites.iter().find(|site| {
        !site.is_some_and(|s| {
            let s = s.trim();
            s.eq_ignore_ascii_case("same-origin") || s.eq_ignore_ascii_case("none")
        })
    });
    let Some(foreign) = foreign else {
        return Ok(());
    };
    let opens_the_page = matches!(*method, Method::GET | Method::HEAD)
        && uri.path() == PAGE
        && is_only(&all("sec-fetch-mode"), "navigate")
        && is_only(&all("sec-fetch-dest"), "document");
    if opens_the_page {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "without --token this server answers only its own page's requests, not ones made by pages of other sites or other ports (Sec-Fetch-Site: {}); open its page (/) directly, or give the server a --token",
            foreign.unwrap_or("not text")
        ),
    ))
}

/// `host[:port]` split into the host (IPv6 without its brackets) and the
/// port's digits (empty where none); `None` where the port is no number.
fn split_authority(authority: &str) -> Option<(&str, &str)> {
    if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port) => {
                Some((ip, port.trim_start_matches(':')))
            }
            _ => None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => Some((host, port)),
            Some(_) => None,
            None => Some((authority, "")),
        }
    }
}

/// `authority` as one origin compares it, where it names this machine:
/// the host lower-cased without a trailing dot, and the port (`default_port`
/// where it names none). `None` for any other name, or a port that is no
/// port. This machine: `localhost` (or a name under it), or a loopback IP
/// address (IPv6 in brackets; written exactly, without a trailing dot).
fn loopback_name(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = split_authority(authority)?;
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let port = match port {
        "" => default_port,
        digits => digits.parse().ok()?,
    };
    loopback.then_some((name, port))
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
            assert!(loopback_name(ok, 80).is_some(), "{ok}");
        }
        // As an origin compares it: lower case, no trailing dot, the
        // scheme's port where none is written.
        let name = |host: &str, port: u16| Some((host.to_string(), port));
        assert_eq!(loopback_name("LocalHost.", 443), name("localhost", 443));
        assert_eq!(loopback_name("[::1]:7860", 80), name("::1", 7860));
        for bad in [
            "evil.example",
            "evil.example:7860",
            "localhost.evil.example",
            "127.0.0.1.nip.io:7860",
            "10.0.0.1:7860",
            "[::2]:7860",
            "[::1]x",
            "localhost:x",
            "localhost:99999",
            "127.0.0.1.:7860",
            "",
        ] {
            assert!(loopback_name(bad, 80).is_none(), "{bad}");
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
        assert!(check(&Method::GET, &path, &local).is_ok());
        assert!(
            check(&Method::GET, &path, &HeaderMap::new()).is_err(),
            "no Host"
        );
        // A second Host header naming another site is not hidden by the first.
        let two = headers(&[(header::HOST, "localhost"), (header::HOST, "evil.example")]);
        assert_eq!(
            check(&Method::GET, &path, &two).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let both_local = headers(&[(header::HOST, "localhost"), (header::HOST, "127.0.0.1")]);
        assert!(check(&Method::GET, &path, &both_local).is_ok());
        // An absolute-form target's authority overrides Host (RFC 9112 3.2.2).
        let absolute: Uri = "http://evil.example/v1/search?q=x".parse().unwrap();
        assert_eq!(
            check(&Method::GET, &absolute, &local).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let absolute_local: Uri = "http://127.0.0.1:7860/v1/search".parse().unwrap();
        assert!(check(&Method::GET, &absolute_local, &local).is_ok());
        assert!(check(&Method::GET, &absolute_local, &HeaderMap::new()).is_ok());
        // Every Origin, not only the first.
        let origins = headers(&[
            (header::HOST, "localhost"),
            (header::ORIGIN, "http://localhost:7860"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(check(&Method::GET, &path, &origins).is_err());
    }

    #[test]
    fn an_origin_must_be_this_servers_own_name_and_port() {
        let post = Method::POST;
        let path: Uri = "/v1/reindex".parse().unwrap();
        let from = |host: &str, origin: &str| {
            check(
                &post,
                &path,
                &headers(&[(header::HOST, host), (header::ORIGIN, origin)]),
            )
        };
        // The server's own page, however the default port is written.
        for (host, origin) in [
            ("localhost:7860", "http://localhost:7860"),
            ("LocalHost.:7860", "http://localhost:7860"),
            ("127.0.0.1:7860", "http://127.0.0.1:7860"),
            ("[::1]:7860", "http://[::1]:7860"),
            ("localhost", "http://localhost:80"),
            ("localhost:80", "http://localhost"),
        ] {
            assert!(from(host, origin).is_ok(), "{host} {origin}");
        }
        // A page on another port of this machine, or under another of its
        // names, is another origin: an old browser that sends no
        // Sec-Fetch-Site must not let its POSTs through.
        for (host, origin) in [
            ("localhost:7860", "http://localhost:3000"),
            ("localhost:7860", "http://localhost"),
            ("localhost", "https://localhost"),
            ("localhost:7860", "http://127.0.0.1:7860"),
            ("127.0.0.1:7860", "http://[::1]:7860"),
            ("localhost:7860", "http://localhost:99999"),
            ("localhost:7860", "null"),
        ] {
            let e = from(host, origin).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{host} {origin}");
        }
        // Every name the request is addressed by must be the origin's.
        let two_names = headers(&[
            (header::HOST, "localhost:7860"),
            (header::ORIGIN, "http://localhost:7860"),
        ]);
        let absolute: Uri = "http://localhost:3000/v1/reindex".parse().unwrap();
        assert!(check(&post, &absolute, &two_names).is_err());
        // A Host whose port names no port is refused, Origin or not.
        assert!(from("localhost:99999", "http://localhost:3000").is_err());
        let no_origin = headers(&[(header::HOST, "localhost:99999")]);
        assert!(check(&post, &path, &no_origin).is_err());
    }

    #[test]
    fn only_this_pages_requests_and_typed_urls_are_answered() {
        let get = Method::GET;
        let thumb: Uri = "/v1/images/3/thumbnail".parse().unwrap();
        let page: Uri = "/".parse().unwrap();
        let with = |extra: &[(&str, &str)]| {
            let mut map = headers(&[(header::HOST, "localhost:7860")]);
            for (name, value) in extra {
                map.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        // The page's own requests, a typed URL, and clients that say nothing.
        for ok in [
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
            vec![("sec-fetch-site", "Same-Origin ")],
            vec![],
        ] {
            assert!(check(&get, &thumb, &with(&ok)).is_ok(), "{ok:?}");
        }
        // An <img> on another site, or on another port of localhost (same-site),
        // or a header that is not one the browsers send.
        for bad in [
            vec![
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ],
            vec![("sec-fetch-site", "same-site")],
            vec![("sec-fetch-site", "whatever")],
            // A second header is not hidden behind a first one that is fine.
            vec![
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-site", "cross-site"),
            ],
        ] {
            let refused = check(&get, &thumb, &with(&bad)).unwrap_err();
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{bad:?}");
        }
        // A link from another site may open the page, in a tab of its own...
        let link = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "document"),
        ];
        assert!(check(&get, &page, &with(&link)).is_ok());
        assert!(check(&get, &"/?q=cat".parse().unwrap(), &with(&link)).is_ok());
        // ...but not anything else, nor the page in a frame, nor by POST.
        assert!(check(&get, &thumb, &with(&link)).is_err());
        assert!(check(&get, &"/v1/search?q=cat".parse().unwrap(), &with(&link)).is_err());
        let framed = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
        ];
        assert!(check(&get, &page, &with(&framed)).is_err());
        assert!(check(&Method::POST, &page, &with(&link)).is_err());
        let page_image = [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "no-cors"),
            ("sec-fetch-dest", "image"),
        ];
        assert!(check(&get, &page, &with(&page_image)).is_err());
    }
}
