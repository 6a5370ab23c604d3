//! A real `seer serve` (no token, loopback) against hostile or careless
//! clients speaking raw HTTP/1.1: what a browser or `ureq` would never send.
//! Each answer is the documented status, and the server keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::server::start_on;
use seer_testkit::shared_data;

/// Sends `request` as given on a new connection and returns the status code
/// and the body (the request must ask for `Connection: close`).
fn raw(url: &str, request: &[u8]) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn get(url: &str, target: &str, headers: &str) -> (u16, String) {
    raw(
        url,
        format!("GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn hostile_requests_get_their_documented_status_and_the_server_keeps_serving() {
    // The eight skimage photos: a small index, quickly made.
    let server = start_on(&[&shared_data().join("smoke").join("skimage")], &[]);
    let url = &server.url;
    let local = "Host: localhost\r\n";

    // The DNS-rebinding rule holds for every name the request is addressed by:
    // an absolute-form target overrides Host, and a second Host header is not
    // hidden behind a first one that is loopback.
    let (status, body) = get(url, "http://evil.example/v1/search?q=cat", local);
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(
        url,
        "/v1/search?q=cat",
        "Host: localhost\r\nHost: evil.example\r\n",
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(url, "/v1/search?q=cat", "Host: evil.example\r\n");
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(url, "http://localhost/v1/search?q=cat&k=1", local);
    assert_eq!(status, 200, "{body}");

    // Ids are integers; nothing else reaches the file system.
    for target in [
        "/v1/images/..%2f..%2fetc%2fpasswd",
        "/v1/images/1%00",
        "/v1/images/%252e%252e",
        "/v1/images/99999999999999999999",
    ] {
        let (status, body) = get(url, target, local);
        assert_eq!(status, 400, "{target}: {body}");
    }
    let (status, body) = get(url, "/v1/images/-1/thumbnail", local);
    assert_eq!(status, 404, "{body}");

    // Query values out of range are 400, and so is a text past the limit
    // (a long one would hold the model's queue while it is tokenized).
    for target in [
        "/v1/search?q=cat&k=-1".to_string(),
        "/v1/search?q=cat&k=1000000000000".to_string(),
        "/v1/search?q=cat&offset=18446744073709551615".to_string(),
        "/v1/search?q=cat&from=2024-02-30".to_string(),
        format!("/v1/search?q={}", "a".repeat(5000)),
    ] {
        let (status, body) = get(url, &target, local);
        assert_eq!(status, 400, "{}: {body}", &target[..40.min(target.len())]);
    }

    // A PNG that claims 50,000 x 50,000 pixels is refused before it is decoded.
    let ihdr = [
        &50_000u32.to_be_bytes()[..],
        &50_000u32.to_be_bytes(),
        &[8, 0, 0, 0, 0],
    ]
    .concat();
    // zlib, one stored block of 10 zero bytes: a tiny file, a huge image.
    let mut idat = vec![0x78, 0x01, 0x01, 10, 0, !10, 0xff];
    idat.extend([0u8; 10]);
    idat.extend(((10u32 << 16) | 1).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &idat), (b"IEND", &[])] {
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(kind);
        png.extend(data);
        png.extend(crc32(&[kind, data].concat()).to_be_bytes());
    }
    let boundary = "seer-abuse-boundary";
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"bomb.png\"\r\n\r\n"
    )
    .into_bytes();
    form.extend(&png);
    form.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut request = format!(
        "POST /v1/search HTTP/1.1\r\n{local}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        form.len()
    )
    .into_bytes();
    request.extend(&form);
    let (status, body) = raw(url, &request);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("pixels"), "{body}");

    // A multipart body without a boundary is a 400, a declared body over the
    // limit a 413 before it is read.
    let (status, body) = raw(
        url,
        format!("POST /v1/search HTTP/1.1\r\n{local}Content-Type: multipart/form-data\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd").as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = raw(
        url,
        format!("POST /v1/search HTTP/1.1\r\n{local}Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 999999999999\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 413, "{body}");

    // And it still answers.
    let (status, body) = get(url, "/v1/search?q=cat&k=1", local);
    assert_eq!(status, 200, "{body}");
}

/// CRC-32 (IEEE) of a PNG chunk's type and data.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// What a hostile page can make the user's browser send to a tokenless server
/// without an `Origin`: an `<img>` probing which ids exist (its onload or
/// onerror tells), a script or link that triggers a search. The browser says
/// who made each request in `Sec-Fetch-Site`; only the page's own requests,
/// typed URLs and clients that say nothing are answered. With a token, the
/// token decides as before.
#[test]
fn requests_other_pages_make_are_refused_and_form_fields_are_given_once() {
    let skimage = shared_data().join("smoke").join("skimage");
    let server = start_on(&[&skimage], &[]);
    let url = &server.url;
    let local = "Host: localhost\r\n";
    let (status, body) = get(url, "/v1/search?q=cat&k=1", local);
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = found["results"][0]["id"].as_i64().expect("an id");

    let img = |site: &str| {
        format!(
            "{local}Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: image\r\n"
        )
    };
    for target in [
        format!("/v1/images/{id}/thumbnail"),
        "/v1/images/999999/thumbnail".to_string(),
        format!("/v1/images/{id}"),
        "/v1/search?q=cat&k=1".to_string(),
    ] {
        // Another site, or another port of localhost: the same answer whether
        // the id exists or not.
        for site in ["cross-site", "same-site"] {
            let (status, body) = get(url, &target, &img(site));
            assert_eq!(status, 403, "{target} {site}: {body}");
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(
                error["error"].as_str().unwrap().contains("Sec-Fetch-Site"),
                "{body}"
            );
        }
    }
    // The page's own thumbnails and a URL the user typed are served.
    let (status, body) = get(
        url,
        &format!("/v1/images/{id}/thumbnail"),
        &img("same-origin"),
    );
    assert_eq!(status, 200, "{body}");
    let typed = format!(
        "{local}Sec-Fetch-Site: none\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n"
    );
    let (status, body) = get(url, &format!("/v1/images/{id}"), &typed);
    assert_eq!(status, 200, "{body}");
    // A link from another site opens the page (whose own requests are then
    // same-origin), but not an image, nor the page in a frame.
    let link = |dest: &str| {
        format!("{local}Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: {dest}\r\n")
    };
    let (status, body) = get(url, "/", &link("document"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("<html") || body.contains("<!doctype"),
        "{body}"
    );
    let (status, body) = get(url, &format!("/v1/images/{id}"), &link("document"));
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(url, "/", &link("iframe"));
    assert_eq!(status, 403, "{body}");

    // A field given twice is 400 in a form as in a query string, not its
    // last value.
    let (status, body) = get(url, "/v1/search?q=cat&k=1&k=5", local);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("duplicate field `k`"), "{body}");
    for fields in [
        &[("q", "cat"), ("k", "1"), ("k", "5")][..],
        &[("q", "cat"), ("q", "dog")],
    ] {
        let (status, body) = common::server::post_form(&format!("{url}/v1/search"), fields, None);
        assert_eq!(status, 400, "{fields:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("duplicate field"),
            "{body}"
        );
    }
    let (status, body) = common::server::post_form(
        &format!("{url}/v1/search"),
        &[("q", "cat"), ("k", "1")],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().unwrap().len(), 1, "{body}");

    // With a token, the token is the guard, whichever page sends it.
    let token = "abuse-walk-token-0123";
    let guarded = start_on(&[&skimage], &["--token", token]);
    let with_token = format!("{}Authorization: Bearer {token}\r\n", img("cross-site"));
    let (status, body) = get(
        &guarded.url,
        &format!("/v1/images/{id}/thumbnail"),
        &with_token,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(
        &guarded.url,
        &format!("/v1/images/{id}/thumbnail"),
        &img("cross-site"),
    );
    assert_eq!(status, 401, "{body}");
}
