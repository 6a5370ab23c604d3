//! The reference (`scripts/bench_reference.py --serve`) as one process that
//! stays up for the whole `seer bench` run: it sets PyTorch and every other
//! engine up once, then times one figure at a time when asked. Each of seer's
//! measurements is followed at once by the same measurement in every engine
//! ([`Reference::follow`]), so both sides of a ratio are seconds apart. Run one
//! after another instead (seer's part, then the whole reference), they were
//! minutes apart, and a shared machine's speed swings from minute to minute
//! decided whole rounds.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{cpu, Args};

/// A figure the reference can time: where it goes in the reference's results
/// (`path`) and which of seer's figures it is set against (`key`).
#[derive(Deserialize)]
struct Measurement {
    path: Vec<String>,
    key: Vec<String>,
}

/// The reference's first line: what set-up learnt, and what it can time.
#[derive(Deserialize)]
struct Ready {
    ready: Value,
    measurements: Vec<Measurement>,
}

pub(super) struct Reference {
    child: Child,
    /// `None` once closed, which tells the reference to exit.
    requests: Option<ChildStdin>,
    replies: BufReader<ChildStdout>,
    /// What set-up learnt (versions, skipped engines, cosines): each round's
    /// results start from it.
    info: Value,
    measurements: Vec<Measurement>,
    /// This round's results, and which measurements it has taken.
    round: Value,
    taken: Vec<bool>,
    // Kept for the reference's lifetime and removed by this process, so a
    // reference killed mid-run (out of memory, SIGKILL) leaves no ONNX
    // exports (about 580 MB for ViT-B/32); Python's own temporary folder would
    // stay.
    _scratch: TempDir,
}

impl Reference {
    /// Starts `scripts/bench_reference.py --serve` under `python` with the
    /// measurement settings and `extra` arguments, and waits for its set-up.
    pub(super) fn start(python: &Path, args: &Args, extra: &[String]) -> anyhow::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_reference.py");
        let batch_sizes: Vec<String> = args.batch_sizes.iter().map(usize::to_string).collect();
        diag!(
            "setting up the reference: PyTorch (bf16 too, on the CPU), and ONNX Runtime and OpenVINO if installed ({})...",
            python.display()
        );
        let scratch = tempfile::Builder::new()
            .prefix("seer-bench-onnx-")
            .tempdir()
            .context("cannot make a temporary folder for the reference's ONNX exports")?;
        let mut command = Command::new(python);
        command.arg(&script).arg("--serve");
        if let Some(cap) = cpu::cap_reference(&mut command) {
            command.args(["--isa-cap", cap]);
        }
        let mut child = command
            .arg("--scratch")
            .arg(scratch.path())
            .args(["--threads", &args.threads.to_string()])
            .args(["--batch-sizes", &batch_sizes.join(",")])
            .args(["--iterations", &args.iterations.to_string()])
            .args(["--files", &args.files().to_string()])
            .args(["--device", &args.device])
            .args(extra)
            .arg("--images")
            .arg(&args.images)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let requests = child.stdin.take().expect("piped");
        let replies = BufReader::new(child.stdout.take().expect("piped"));
        let mut reference = Reference {
            child,
            requests: Some(requests),
            replies,
            info: Value::Null,
            measurements: Vec::new(),
            round: Value::Null,
            taken: Vec::new(),
            _scratch: scratch,
        };
        let reply = reference.reply()?;
        let ready = Ready::deserialize(&reply)
            .ok()
            .filter(|r| r.measurements.iter().all(|m| !m.path.is_empty()))
            .with_context(|| format!("unexpected reference output: {reply}"))?;
        reference.info = ready.ready;
        reference.measurements = ready.measurements;
        reference.new_round();
        Ok(reference)
    }

    fn new_round(&mut self) {
        self.round = self.info.clone();
        self.taken = vec![false; self.measurements.len()];
    }

    /// Times every figure the reference has for `key` (seer's figure just
    /// taken: `["image_model", "8"]`, `["e2e"]`) that this round has not.
    pub(super) fn follow(&mut self, key: &[&str]) -> anyhow::Result<()> {
        for index in 0..self.measurements.len() {
            if !self.taken[index] && self.measurements[index].key.iter().eq(key) {
                self.take(index)?;
            }
        }
        Ok(())
    }

    /// Times what this round has not taken yet (figures seer has no
    /// counterpart for) and returns the round's results, shaped as the
    /// reference prints them when run by hand.
    pub(super) fn finish_round(&mut self) -> anyhow::Result<Value> {
        for index in 0..self.measurements.len() {
            if !self.taken[index] {
                self.take(index)?;
            }
        }
        let round = std::mem::take(&mut self.round);
        self.new_round();
        Ok(round)
    }

    fn take(&mut self, index: usize) -> anyhow::Result<()> {
        self.taken[index] = true;
        let requests = self.requests.as_mut().expect("open until dropped");
        writeln!(requests, "{}", json!({ "measure": index }))
            .and_then(|()| requests.flush())
            .context("the reference stopped taking requests")?;
        let reply = self.reply()?;
        let path = &self.measurements[index].path;
        match (reply.get("rate"), reply.get("error")) {
            (Some(rate), _) if rate.is_number() => {
                anyhow::ensure!(
                    set_at(&mut self.round, path, rate.clone()),
                    "the reference's figure {} has no place in its results",
                    path.join("/")
                );
            }
            // One engine's failure leaves its figure out, not the others'.
            (_, Some(error)) => diag!(
                "reference {}: failed, {}",
                path.join("/"),
                error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_string)
            ),
            _ => anyhow::bail!("unexpected reference output: {reply}"),
        }
        Ok(())
    }

    /// The next line the reference prints, as JSON; its exit status if it
    /// ended instead.
    fn reply(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        let read = self
            .replies
            .read_line(&mut line)
            .context("cannot read the reference's output")?;
        if read == 0 {
            let status = self.child.wait().context("cannot wait for the reference")?;
            anyhow::bail!("the reference benchmark failed ({status})");
        }
        serde_json::from_str(line.trim_end())
            .with_context(|| format!("unexpected reference output: {}", line.trim_end()))
    }
}

/// Puts `value` at `path` under `root`, making the objects on the way; false
/// where something other than an object is in the way.
fn set_at(root: &mut Value, path: &[String], value: Value) -> bool {
    let mut node = root;
    for part in path {
        if node.is_null() {
            *node = json!({});
        }
        let Some(object) = node.as_object_mut() else {
            return false;
        };
        node = object.entry(part.as_str()).or_insert(Value::Null);
    }
    *node = value;
    true
}

impl Drop for Reference {
    /// Closing its stdin ends the reference; waiting reaps it.
    fn drop(&mut self) {
        self.requests = None;
        let _ = self.child.wait();
    }
}
