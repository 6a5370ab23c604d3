//! Starting a real `seer serve` for tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

pub fn seer() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1");
    c
}

/// An index of the shared smoke images, served with `extra` options.
pub fn start(extra: &[&str]) -> Server {
    start_on(&[&shared_data().join("smoke")], extra)
}

/// An index of `folders`, served with `extra` options.
pub fn start_on(folders: &[&Path], extra: &[&str]) -> Server {
    let index = tempfile::tempdir().unwrap();
    index_with(index.path(), folders, &model_fixture("openclip-vit"));
    serve(index, extra)
}

/// Indexes `folders` into `index` with `model`.
pub fn index_with(index: &Path, folders: &[&Path], model: &Path) {
    let status = seer()
        .arg("index")
        .args(folders)
        .args(["--model", model.to_str().unwrap()])
        .env("SEER_INDEX", index)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    // 1 means some entries could not be indexed (tests that plant bad files or
    // links want that); the rest is indexed and served.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "seer index failed: {status}"
    );
}

/// `seer serve` of an index made beforehand, with `extra` options.
pub fn serve(index: tempfile::TempDir, extra: &[&str]) -> Server {
    // Port 0: the server picks a free port and says which, so parallel tests
    // never race for one.
    let mut child = seer()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .env("SEER_INDEX", index.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        // Keep draining stderr so the server never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // "seer: serving MODEL[, MODEL…] on http://ADDR" (the last " on ":
            // a model's folder may have one in its name).
            if let Some((_, url)) = line
                .rsplit_once(" on ")
                .filter(|_| line.starts_with("seer: serving"))
            {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server did not come up");
    Server { child, url, index }
}

/// Status and JSON body of a response, error statuses included.
pub fn json_of(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let body: Value = response.into_json().unwrap_or(Value::Null);
    (status, body)
}

/// A multipart form body with text fields and, optionally, the file `image`;
/// returns (Content-Type, body).
pub fn multipart(fields: &[(&str, &str)], image: Option<&Path>) -> (String, Vec<u8>) {
    let boundary = "seer-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    if let Some(path) = image {
        let name = path.file_name().unwrap().to_string_lossy();
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend(std::fs::read(path).unwrap());
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub fn post_form(url: &str, fields: &[(&str, &str)], image: Option<&Path>) -> (u16, Value) {
    let (ct, body) = multipart(fields, image);
    json_of(ureq::post(url).set("Content-Type", &ct).send_bytes(&body))
}

/// A gauge or counter from a server's /metrics.
pub fn metric(url: &str, name: &str) -> f64 {
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}
