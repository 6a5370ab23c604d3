//! Starting a real `seer serve` for tests.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use seer_testkit::{model_fixture, shared_data, tokenizer_file};

pub struct Server {
    pub child: Child,
    pub url: String,
    pub index: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn seer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1");
    c
}

/// An index of the shared smoke images, served with `extra` options.
pub fn start(extra: &[&str]) -> Server {
    let index = tempfile::tempdir().unwrap();
    let model = model_fixture("openclip-vit");
    let status = seer()
        .args([
            "index",
            shared_data().join("smoke").to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ])
        .env("SEER_INDEX", index.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let port = free_port();
    let child = seer()
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("SEER_INDEX", index.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, url, index }
}
