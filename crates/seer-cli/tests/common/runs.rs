//! Inputs and wrappers the command tests share: training pairs, and a full
//! disk stood in for by a file size limit.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use seer_testkit::shared_data;

/// `n` caption pairs of CIFAR-10 test images in a JSONL list in `dir`.
pub fn pairs_file(dir: &Path, n: usize) -> PathBuf {
    let images = shared_data().join("cifar10-test-subset/images");
    let classes = ["cat", "dog", "ship", "truck"];
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let class = classes[i % classes.len()];
            let image = images.join(format!("{class}/{:04}.jpg", i / classes.len()));
            serde_json::json!({"image": image, "caption": format!("a photo of a {class}.")})
                .to_string()
        })
        .collect();
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// A command that runs `seer` (its arguments added by the caller) with no
/// file allowed to grow past `blocks` 512-byte blocks (RLIMIT_FSIZE, the
/// shell's `ulimit -f`): a write past it fails as one past the end of a disk
/// does (EFBIG where a disk says ENOSPC), without privileges. The shell
/// ignores SIGXFSZ first (an ignored signal stays ignored across exec), so
/// the write fails instead of killing seer.
pub fn seer_file_size_limited(blocks: u64) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_seer"));
    c
}
