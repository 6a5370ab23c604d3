//! `seer serve` stops gracefully on SIGTERM as on SIGINT (Ctrl-C): service
//! managers (systemd, docker, Kubernetes) stop services with SIGTERM, and a
//! request in flight then still gets its answer, and the exit code is 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::server::{json_of, serve};
use seer_testkit::model_fixture;

/// Whether this process ignores `signal` (a child started so ignores it too).
fn ignored_here(signal: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// The answer on `stream` up to the server's closing it.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("reading the answer failed: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn sigterm_and_sigint_let_a_request_in_flight_finish_and_exit_0() {
    let mut signals = vec!["TERM"];
    match ignored_here(2) {
        true => eprintln!("SIGINT is ignored here: tested with SIGTERM only"),
        false => signals.insert(0, "INT"),
    }
    let model = model_fixture("openclip-vit");
    for signal in signals {
        // /v1/embed needs no index: the model given is served as it is.
        let index = tempfile::tempdir().unwrap();
        let mut server = serve(index, &["--model", model.to_str().unwrap()]);
        let addr = server.url.trim_start_matches("http://").to_string();

        // A request whose body is half sent when the signal comes: in flight.
        let body = br#"{"texts": ["a photo of a cat"]}"#;
        let mut stream = TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST /v1/embed HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(&body[..10]).unwrap();
        stream.flush().unwrap();
        // Connections are accepted in the order they come: once a later one
        // is answered, this one is the server's (not left in the backlog).
        let (health, _) = json_of(ureq::get(&format!("{}/healthz", server.url)).call());
        assert_eq!(health, 200);

        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &server.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        // The server stops listening once it took the signal (killed, it
        // ends, 143 for SIGTERM).
        while TcpStream::connect(&addr).is_ok() {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("SIG{signal}: seer serve ended ({status}) with a request in flight");
            }
            std::thread::sleep(Duration::from_millis(20));
        }

        stream.write_all(&body[10..]).unwrap();
        let answer = read_to_close(&mut stream);
        let status = server.child.wait().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "SIG{signal}: the request in flight got {answer:?}; seer serve ended ({status})"
        );
        assert!(answer.contains("\"embeddings\""), "SIG{signal}: {answer}");
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status}");
    }
}

/// The bit of `signal` in the mask of `field` (SigIgn, SigCgt) of `pid`'s status.
fn signal_bit(pid: u32, field: &str, signal: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    mask & (1 << (signal - 1)) != 0
}

/// A server killed at the end of a test that failed before stopping it.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A script's background job starts with SIGINT ignored: the server leaves
/// it so, as every other command does, and still stops on SIGTERM.
#[test]
fn a_signal_ignored_at_start_stays_ignored() {
    use std::io::BufRead;
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit");
    let mut child = Stopped(
        Command::new("/bin/sh")
            .arg("-c")
            .arg("trap '' INT; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_seer"))
            .args(["serve", "--bind", "127.0.0.1:0", "--model"])
            .arg(&model)
            .env("SEER_TOKENIZER", seer_testkit::tokenizer_file())
            .env("HF_HUB_OFFLINE", "1")
            .env("SEER_INDEX", index.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines().map_while(Result::ok);
    // Its signals are set up before it says it serves.
    let serving = lines.find(|l| l.starts_with("seer: serving"));
    assert!(serving.is_some(), "seer serve did not start");
    let pid = child.id();
    assert!(signal_bit(pid, "SigIgn", 2), "SIGINT is no longer ignored");
    assert!(signal_bit(pid, "SigCgt", 15), "SIGTERM is not caught");
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // Drained, so the server never waits on a full pipe while it stops.
    lines.for_each(drop);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
