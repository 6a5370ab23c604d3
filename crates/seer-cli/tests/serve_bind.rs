//! `seer serve --bind` takes a host name as well as an IP address: it was
//! refused as "invalid socket address syntax". A name is loopback (served
//! without a token) only when every address it resolves to is.

mod common;

use std::io::{BufRead, BufReader};
use std::net::ToSocketAddrs;
use std::process::Stdio;

use common::server::{json_of, seer};
use seer_testkit::model_fixture;

/// A server killed at the end of the test.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn localhost_is_served_without_a_token() {
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit");
    let mut server = Stopped(
        seer()
            .args(["serve", "--bind", "localhost:0", "--model"])
            .arg(&model)
            .env("SEER_INDEX", index.path())
            .env_remove("SEER_TOKEN")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = BufReader::new(server.0.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    let serving = lines
        .next()
        .unwrap_or_else(|| panic!("seer serve said nothing"));
    let (_, url) = serving
        .rsplit_once(" on ")
        .filter(|_| serving.starts_with("seer: serving"))
        .unwrap_or_else(|| panic!("seer serve did not start: {serving}"));
    // Drained, so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    // Answered in full: no token asked for.
    let (status, body) = json_of(ureq::get(&format!("{url}/healthz")).call());
    assert_eq!(status, 200, "{body}");
    assert!(body["model"].is_string(), "{body}");
}

#[test]
fn a_name_of_an_address_other_than_loopback_needs_the_token() {
    // "0" is a name to seer (not an IP address as Rust writes one), which the
    // system's resolver reads as 0.0.0.0, every interface.
    let resolved: Vec<_> = match ("0", 0).to_socket_addrs() {
        Ok(found) => found.collect(),
        Err(e) => return eprintln!("skipped: this system does not resolve \"0\": {e}"),
    };
    if resolved.iter().all(|a| a.ip().is_loopback()) {
        return eprintln!("skipped: \"0\" resolves to loopback here: {resolved:?}");
    }
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit");
    let out = seer()
        .args(["serve", "--bind", "0:0", "--model"])
        .arg(&model)
        .env("SEER_INDEX", index.path())
        .env_remove("SEER_TOKEN")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refusing to listen on 0:0 (0.0.0.0:0) without --token"),
        "{stderr}"
    );
}
