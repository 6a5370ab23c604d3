//! What a user reads when a file is not a usable image: the path once per line,
//! the cause in their words (no Rust names), and no colour codes in a pipe.

use std::process::Command;

use seer_testkit::{repo_root, tokenizer_file};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn decode_errors_name_the_file_once_and_the_cause_plainly() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.jpg");
    std::fs::write(&junk, [0xFFu8; 4096]).unwrap();
    let notes = tmp.path().join("notes.png");
    std::fs::write(&notes, "shopping list: apples, pears\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(["embed", "--model"])
        .arg(repo_root().join("fixtures/training/model"))
        .arg("--image")
        .args([&junk, &notes])
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run seer");
    let stderr = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    for (path, cause) in [
        (&junk, "no known image signature"),
        (&notes, "looks like text"),
    ] {
        let path = path.display().to_string();
        let line = stderr
            .lines()
            .find(|l| l.contains(&path))
            .unwrap_or_else(|| panic!("no line for {path}: {stderr}"));
        assert_eq!(line.matches(&path).count(), 1, "{line}");
        assert!(line.contains(cause), "{line}");
    }
    assert!(!stderr.contains("\x1b["), "{stderr:?}");
}
