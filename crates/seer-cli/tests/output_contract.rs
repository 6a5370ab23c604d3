//! The output contract a script relies on: a reader that leaves stdout early
//! never costs the files a command was asked to write, and Ctrl-C (SIGINT) or
//! SIGTERM ends a run with a message, the exit status a shell gives a process
//! the signal ended (128 + N), and no half-written temporary beside `--out`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use seer_testkit::{model_fixture, repo_root, shared_data, tokenizer_file};

fn seer_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seer"));
    c.args(args)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("SEER_MODEL")
        .env_remove("SEER_INDEX");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `args` run with stdout a pipe whose reader has already gone (`| head -1`
/// once it has its line).
fn with_reader_gone(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    seer_command(args).stdout(writer).output().unwrap()
}

fn samples() -> PathBuf {
    shared_data().join("imagenet-samples/images")
}

/// A folder of the first `n` sample photos.
fn photo_folder(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(samples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files.iter().take(n) {
        std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    dir
}

/// The shape in an `.npy` file's header.
fn npy_shape(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..128.min(bytes.len())]).to_string();
    let start = header.find("'shape': (").unwrap() + "'shape': (".len();
    header[start..start + header[start..].find(')').unwrap()].to_string()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

// ------------------------------------------------- a reader that leaves early

/// `--features patch --out grid.npy --json` prints a line per row while the
/// rows stream into the file: the first line a reader did not want stopped
/// the run, exit 0 and silently no file.
#[test]
fn patch_grids_are_written_when_the_json_reader_leaves() {
    let photos = photo_folder(3);
    let out = tempfile::tempdir().unwrap();
    let grid = out.path().join("grid.npy");
    let model = repo_root().join("fixtures/families/dinov2-tiny");
    let o = with_reader_gone(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--image",
        photos.path().to_str().unwrap(),
        "--features",
        "patch",
        "--out",
        grid.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(grid.is_file(), "no {}: {}", grid.display(), stderr(&o));
    assert!(npy_shape(&grid).starts_with("3, "), "{}", npy_shape(&grid));
    let listing = std::fs::read_to_string(out.path().join("grid.inputs.txt")).unwrap();
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert_eq!(names_in(out.path()), ["grid.inputs.txt", "grid.npy"]);
}

/// `segment --out DIR --coco FILE --json` wrote the cut-outs of the first
/// image only, and no COCO file, once the reader had gone.
#[test]
fn segment_files_are_written_when_the_json_reader_leaves() {
    let photos = photo_folder(3);
    let out = tempfile::tempdir().unwrap();
    let cutouts = out.path().join("cut");
    let coco = out.path().join("coco.json");
    let model = repo_root().join("fixtures/sam/sam-tiny");
    let o = with_reader_gone(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        photos.path().to_str().unwrap(),
        "--point",
        "10,10",
        "--out",
        cutouts.to_str().unwrap(),
        "--coco",
        coco.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 images done"), "{}", stderr(&o));
    // Three masks per prompted image.
    assert_eq!(names_in(&cutouts).len(), 9, "{:?}", names_in(&cutouts));
    let coco: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&coco).expect("the COCO file")).unwrap();
    assert_eq!(coco["images"].as_array().unwrap().len(), 3);
}

/// Without a file to write, a reader that leaves still stops the work at
/// once, quietly: there is nothing left to do it for.
#[test]
fn segment_without_files_stops_quietly_when_the_reader_leaves() {
    let photos = photo_folder(3);
    let model = repo_root().join("fixtures/sam/sam-tiny");
    let o = with_reader_gone(&[
        "segment",
        "--model",
        model.to_str().unwrap(),
        photos.path().to_str().unwrap(),
        "--point",
        "10,10",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("images done"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

// ------------------------------------------------------------------ signals

/// Whether this process ignores `signal` (the child would inherit that).
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

/// Waits until `ready` holds, failing if `child` ends first.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("seer ended ({status}) before {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// The signals a test can send: SIGINT only where this process does not
/// ignore it (a child started ignoring a signal keeps ignoring it).
fn signals() -> Vec<(&'static str, i32)> {
    let mut signals = vec![("TERM", 15)];
    match ignored_here(2) {
        true => eprintln!("SIGINT is ignored here: tested with SIGTERM only"),
        false => signals.insert(0, ("INT", 2)),
    }
    signals
}

/// Patch grids stream into `.grid.npy.XXXXXX.tmp` beside `--out`: a Ctrl-C
/// left it there (as large as the output so far), with no word said.
#[test]
fn an_interrupted_embed_says_so_and_leaves_no_temporary() {
    let model = repo_root().join("fixtures/families/dinov2-tiny");
    let images = samples();
    for (signal, number) in signals() {
        let out = tempfile::tempdir().unwrap();
        let grid = out.path().join("grid.npy");
        let mut args = vec![
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--features",
            "patch",
            "--out",
            grid.to_str().unwrap(),
            "--threads",
            "1",
            "--image",
        ];
        // Far more rows than the run gets to before the signal.
        args.extend(std::iter::repeat_n(images.to_str().unwrap(), 50));
        let mut child = seer_command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until(&mut child, "writing its temporary", || {
            names_in(out.path()).iter().any(|n| n.ends_with(".tmp"))
        });
        send(&child, signal);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(128 + number), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("(SIG{signal})")), "{err}");
        assert!(
            err.contains("not written") && err.contains("grid.npy"),
            "{err}"
        );
        assert!(
            names_in(out.path()).is_empty(),
            "{:?}",
            names_in(out.path())
        );
    }
}

/// Bytes the process `pid` has read so far (`rchar` of /proc/PID/io).
fn bytes_read(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Total size of the files in `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// `embed --out` holds its rows until the end, so no temporary is open to
/// tell of the file during the run: the signal's message still names it.
#[test]
fn an_interrupted_embed_names_the_out_file_it_did_not_write() {
    let model = model_fixture("openclip-vit");
    let images = samples();
    for (signal, number) in signals() {
        let out = tempfile::tempdir().unwrap();
        let npy = out.path().join("vectors.npy");
        let mut args = vec![
            "embed",
            "--model",
            model.to_str().unwrap(),
            "--out",
            npy.to_str().unwrap(),
            "--threads",
            "1",
            "--image",
        ];
        args.extend(std::iter::repeat_n(images.to_str().unwrap(), 400));
        let mut child = seer_command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The model is loaded and images are being read: the model's files
        // and two passes over the folder were read.
        let model_bytes: u64 = folder_bytes(&model);
        let pid = child.id();
        wait_until(&mut child, "reading images", || {
            bytes_read(pid) > model_bytes + 2 * folder_bytes(&images)
        });
        send(&child, signal);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(128 + number), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("not written") && err.contains("vectors.npy"),
            "{err}"
        );
        assert!(
            names_in(out.path()).is_empty(),
            "{:?}",
            names_in(out.path())
        );
    }
}

/// An interrupted index run says so, and what it leaves: an index that
/// works, lock released, which the next run finishes.
#[test]
fn an_interrupted_index_says_so_and_the_next_run_finishes() {
    let model = model_fixture("openclip-vit");
    let images = samples();
    for (signal, number) in signals() {
        let index = tempfile::tempdir().unwrap();
        let run = |c: &mut Command| {
            c.args([
                "index",
                images.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
                "--threads",
                "1",
                "--index",
                index.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        };
        let mut c = seer_command(&[]);
        run(&mut c);
        let mut child = c.spawn().unwrap();
        wait_until(&mut child, "creating the index", || {
            index.path().join("index.sqlite").exists()
        });
        send(&child, signal);
        let o = child.wait_with_output().unwrap();
        // It may have finished first on a fast machine: nothing to check then.
        if o.status.code() == Some(0) {
            continue;
        }
        assert_eq!(o.status.code(), Some(128 + number), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&format!("(SIG{signal})")), "{err}");
        assert!(err.contains("run it again"), "{err}");
        let mut again = seer_command(&[]);
        run(&mut again);
        let o = again.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}
