//! Output helpers: progress bars that only appear on a terminal, failure lines,
//! and `.npy` files.

use std::io::{IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use seer_index::pathcodec::display_path;

pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar on stderr, hidden when stderr is not a terminal (pipes, CI).
pub fn progress(total: usize, what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// A progress bar whose message carries changing details (training's loss, lr
/// and rate), hidden when stderr is not a terminal. The message comes last and
/// is cut to the terminal's width: a line that wraps is drawn anew below the
/// last one at every update instead of in place.
pub fn progress_with_details(total: usize, what: &str) -> ProgressBar {
    if !stderr_is_terminal() {
        return ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::hidden());
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(details_style());
    pb.set_message(what.to_string());
    pb
}

fn details_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} ETA {eta} {wide_msg}")
        .expect("valid template")
        .progress_chars("=> ")
}

/// A failure's cause without the path its message starts with: library errors
/// name their file, and the `error: PATH: cause` line names it already.
pub fn cause_without_path<'a>(path: &str, cause: &'a str) -> &'a str {
    cause
        .strip_prefix(path)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(cause)
}

/// Collects per-input failures, prints each as it happens and a summary at the end.
#[derive(Default)]
pub struct Failures {
    pub items: Vec<(String, String)>,
}

impl Failures {
    pub fn report(&mut self, pb: &ProgressBar, input: &str, cause: &str) {
        let cause = cause_without_path(input, cause);
        pb.suspend(|| diag!("error: {input}: {cause}"));
        self.items.push((input.to_string(), cause.to_string()));
    }

    /// A failure of one file: its name escaped (it may hold a newline or not be
    /// UTF-8), and the cause on one line without the lossy copy of the name
    /// that error messages start with.
    pub fn report_path(&mut self, pb: &ProgressBar, path: &Path, cause: &str) {
        let lossy = path.display().to_string();
        let cause = cause
            .strip_prefix(lossy.as_str())
            .and_then(|c| c.strip_prefix(": "))
            .unwrap_or(cause);
        self.report(pb, &display_path(path), &escape_line(cause));
    }

    /// `what` is the plural ("images"); one is said in the singular.
    pub fn summary(&self, done: usize, what: &str) {
        diag!("{}", self.summary_line(done, what));
    }

    fn summary_line(&self, done: usize, what: &str) -> String {
        let what = match done {
            1 => what.strip_suffix('s').unwrap_or(what),
            _ => what,
        };
        match self.items.len() {
            0 => format!("{done} {what} done"),
            failed => format!("{done} {what} done, {failed} failed"),
        }
    }

    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.items.is_empty() {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::from(1)
        }
    }
}

/// Stdout lines of a command whose product is a file (`embed --features patch
/// --out`, `segment --out/--coco`): a reader that closes stdout early (`| head
/// -1`) must not stop the work, or the file is silently never written, so the
/// lines are dropped from then on. Any other failure to print (a full disk) is
/// an error. Without files to write (`keep_going` false), a closed stdout stops
/// the command quietly, as everywhere else.
pub struct Lines {
    keep_going: bool,
    reader_gone: bool,
}

impl Lines {
    pub fn new(keep_going: bool) -> Self {
        Self {
            keep_going,
            reader_gone: false,
        }
    }

    pub fn print(&mut self, line: impl std::fmt::Display) -> anyhow::Result<()> {
        if self.reader_gone {
            return Ok(());
        }
        match writeln!(std::io::stdout().lock(), "{line}") {
            Err(e) if self.keep_going && e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.reader_gone = true;
                Ok(())
            }
            written => Ok(written?),
        }
    }
}

/// On Ctrl-C (SIGINT) or SIGTERM: removes the temporaries this process is
/// writing (`--out` files stream into `.<name>.<random>.tmp` beside their
/// destination, which a plain kill left behind, as large as the output), says
/// which outputs were not written (and `note`, what the command leaves), and exits with 128 + the signal's number,
/// as a shell reports a process the signal ended. A signal the process was
/// started ignoring (`seer index &` in a script: the shell does that so that
/// Ctrl-C stops the script, not its background jobs) stays ignored.
pub fn exit_cleanly_on_signals(note: &'static str) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("seer-signals")
        .enable_io()
        .build()
    else {
        return;
    };
    for (kind, number, what) in [
        (SignalKind::interrupt(), 2, "interrupted (SIGINT)"),
        (SignalKind::terminate(), 15, "terminated (SIGTERM)"),
    ] {
        if seer_util::signals::ignored_at_start(number) {
            continue;
        }
        // Registered here, before the command starts: no window where the
        // signal still ends the process the old way.
        let registered = {
            let _in_runtime = runtime.enter();
            signal(kind)
        };
        let Ok(mut stream) = registered else {
            continue;
        };
        runtime.spawn(async move {
            if stream.recv().await.is_some() {
                exit_on_signal(number, what, note);
            }
        });
    }
    // Lives as long as the process: it watches for the signals.
    std::mem::forget(runtime);
}

fn exit_on_signal(number: i32, what: &str, note: &str) -> ! {
    let mut unwritten = remove_open_temporaries();
    // try_lock: the signal may have come while the main thread held it.
    if let Ok(pending) = WRITTEN_AT_THE_END.try_lock() {
        unwritten.extend(pending.iter().cloned());
        unwritten.sort();
        unwritten.dedup();
    }
    // A progress bar may be half drawn on the terminal's last line.
    let start = if stderr_is_terminal() { "\n" } else { "" };
    let mut line = format!("{start}error: {what}");
    if !unwritten.is_empty() {
        let names: Vec<String> = unwritten.iter().map(|p| display_path(p)).collect();
        line.push_str(&format!(
            "; not written: {} (unfinished temporary removed)",
            names.join(", ")
        ));
    }
    if !note.is_empty() {
        line.push_str("; ");
        line.push_str(note);
    }
    diag!("{line}");
    std::process::exit(128 + number)
}

/// Files the command writes only when it finishes (`embed --out`, whose rows
/// are held until the end): a signal before then leaves them unwritten with
/// no temporary open to tell of it, so they are named from here.
static WRITTEN_AT_THE_END: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Notes that the command writes `path` when it finishes (see
/// [`WRITTEN_AT_THE_END`]); [`written`] once it is in place.
pub fn will_write(path: &Path) {
    let mut pending = WRITTEN_AT_THE_END.lock().unwrap_or_else(|p| p.into_inner());
    pending.push(path.to_path_buf());
}

/// `path`, noted by [`will_write`], is in place.
pub fn written(path: &Path) {
    let mut pending = WRITTEN_AT_THE_END.lock().unwrap_or_else(|p| p.into_inner());
    pending.retain(|p| p != path);
}

/// Removes the temporaries of `seer_util::fs::AtomicFile` this process has
/// open (found through `/proc/self/fd`, so never another process's), and
/// returns the files they were to become.
fn remove_open_temporaries() -> Vec<PathBuf> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut unwritten = Vec::new();
    for fd in fds.flatten() {
        let Ok(path) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let Some(dest) = seer_util::fs::destination_of_temporary(&path) else {
            continue;
        };
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
            && std::fs::remove_file(&path).is_ok()
        {
            unwritten.push(dest);
        }
    }
    unwritten.sort();
    unwritten.dedup();
    unwritten
}

/// Writes a little-endian f32 `[rows, cols]` array in NumPy's `.npy` format.
pub fn write_npy(path: &Path, rows: &[Vec<f32>], cols: usize) -> anyhow::Result<()> {
    let bytes = seer_index::npy::encode(rows, cols, seer_index::npy::Dtype::F32)
        .map_err(anyhow::Error::msg)?;
    write_atomically(path, &bytes)
}

/// An f32 `.npy` written as its rows come, for arrays too big to hold (a patch
/// grid per image): the rows go straight to a temporary file beside the
/// destination, which replaces it on [`NpyStream::commit`]. The header, which
/// holds the row count, is written last over room reserved for the longest.
pub struct NpyStream {
    file: seer_util::fs::AtomicFile,
    /// The shape of one row (`[h, w, D]` for patch grids).
    row_shape: Vec<usize>,
    rows: usize,
    header_len: usize,
}

impl NpyStream {
    pub fn create(path: &Path, row_shape: &[usize]) -> anyhow::Result<Self> {
        let header_len = Self::header(usize::MAX, row_shape, 0).len();
        let file = seer_util::fs::AtomicFile::create(path, seer_util::fs::Durability::Fsync)
            .and_then(|mut f| {
                f.write_all(&vec![b' '; header_len])?;
                Ok(f)
            })
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(Self {
            file,
            row_shape: row_shape.to_vec(),
            rows: 0,
            header_len,
        })
    }

    fn header(rows: usize, row_shape: &[usize], min_len: usize) -> Vec<u8> {
        let shape: Vec<usize> = std::iter::once(rows)
            .chain(row_shape.iter().copied())
            .collect();
        seer_index::npy::header(&shape, seer_index::npy::Dtype::F32, min_len)
    }

    /// Where the file goes on commit.
    pub fn path(&self) -> &Path {
        self.file.dest()
    }

    /// Appends one row of `row_shape` values, row-major.
    pub fn push(&mut self, row: &[f32]) -> anyhow::Result<()> {
        let expected: usize = self.row_shape.iter().product();
        anyhow::ensure!(
            row.len() == expected,
            "a row has {} values, expected {expected}",
            row.len()
        );
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.file
            .write_all(&bytes)
            .with_context(|| format!("{}: cannot write", self.file.dest().display()))?;
        self.rows += 1;
        Ok(())
    }

    /// Writes the header and puts the file in place; returns the row count.
    pub fn commit(mut self) -> anyhow::Result<usize> {
        let dest = self.file.dest().to_path_buf();
        let header = Self::header(self.rows, &self.row_shape, self.header_len);
        debug_assert_eq!(header.len(), self.header_len);
        let file = self.file.file();
        let written = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header));
        written
            .and_then(|()| self.file.commit())
            .with_context(|| format!("{}: cannot write", dest.display()))?;
        Ok(self.rows)
    }
}

/// The `.inputs.txt` beside an `.npy`: `x.npy` -> `x.inputs.txt`. None when
/// the array goes to a device, pipe or socket (`--out /dev/stdout`): the
/// listing beside it would be a new file in `/dev` (or fail to be one).
pub fn inputs_path(npy: &Path) -> Option<PathBuf> {
    (!seer_util::fs::is_device_pipe_or_socket(npy)).then(|| npy.with_extension("inputs.txt"))
}

/// Writes to a temporary file then renames, so a crash never leaves half a file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    seer_util::fs::write(path, bytes, seer_util::fs::Durability::Fsync)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// One line per input in `.inputs.txt` and in listings: newlines and other
/// control characters, and backslashes, are escaped the way paths are shown
/// (see `seer_index::pathcodec`), so the escaping reads back the same way.
pub fn escape_line(s: &str) -> String {
    seer_index::pathcodec::display_text(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;

    #[test]
    fn one_is_said_in_the_singular() {
        let mut f = Failures::default();
        assert_eq!(f.summary_line(1, "images"), "1 image done");
        assert_eq!(f.summary_line(0, "images"), "0 images done");
        f.items.push(("a.jpg".into(), "broken".into()));
        assert_eq!(f.summary_line(2, "inputs"), "2 inputs done, 1 failed");
        assert_eq!(f.summary_line(1, "samples"), "1 sample done, 1 failed");
    }

    #[test]
    fn only_atomic_file_temporaries_are_taken_for_unfinished_outputs() {
        let dest = |p: &str| seer_util::fs::destination_of_temporary(Path::new(p));
        assert_eq!(
            dest("/o/.grid.npy.Ab3xZ9.tmp"),
            Some(PathBuf::from("/o/grid.npy"))
        );
        assert_eq!(dest(".a.tmp.b.XXXXXX.tmp"), Some(PathBuf::from("a.tmp.b")));
        for other in [
            "/o/grid.npy",
            "/o/.tmpAb3xZ9",
            "/o/..Ab3xZ9.tmp",
            "/o/.grid.npy.Ab-xZ9.tmp",
            "/o/grid.npy.Ab3xZ9.tmp",
            "/i/index.sqlite-wal",
            "/o/.x.tmp",
        ] {
            assert_eq!(dest(other), None, "{other}");
        }
    }

    #[test]
    fn escaped_lines_stay_one_line() {
        assert_eq!(escape_line("a\nb\\c"), "a\\nb\\\\c");
    }

    /// An 80-column terminal that keeps what is written on each line.
    #[derive(Debug, Default, Clone)]
    struct Narrow {
        lines: Arc<Mutex<Vec<String>>>,
    }

    impl TermLike for Narrow {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.lines.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_training_bar_fits_an_80_column_terminal() {
        let term = Narrow::default();
        let pb = ProgressBar::with_draw_target(
            Some(100_000),
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        pb.set_style(details_style());
        pb.set_position(12_345);
        // What training sets at each step, at its widest.
        pb.set_message("loss 10.1234 lr 1.00e-4 123456 samples/s");
        pb.tick();
        let lines = term.lines.lock().unwrap().clone();
        let last = lines
            .iter()
            .rev()
            .find(|l| l.contains("/100000"))
            .expect("the bar drawn");
        let width = last.chars().count();
        assert!(width <= 80, "{width} columns: {last:?}");
        assert!(last.contains("12345/100000"), "{last:?}");
        assert!(last.contains("loss 10.1234"), "{last:?}");
    }
}
