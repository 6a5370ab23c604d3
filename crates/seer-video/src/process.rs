//! Running ffmpeg/ffprobe: a guard that kills and reaps the child on every
//! path, and reader threads so that a silent child can be given up on.
//!
//! Why threads: std has no read with a timeout on a pipe. A thread reads stdout
//! (and parses it) and hands results over a bounded channel; the caller waits
//! with `recv_timeout(stall)`, so "nothing for `stall` seconds" is measured
//! only while we wait for ffmpeg, never while the caller works on a frame.
//! Another thread drains stderr (so ffmpeg never blocks on a full pipe) and
//! keeps its last lines for the error message.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::Cancel;

/// Lines of stderr kept for messages, and the length each is cut to.
const STDERR_LINES: usize = 20;
const STDERR_LINE_CHARS: usize = 400;

/// A running child. Dropping it (early stop, error, a panicking callback)
/// kills the child and waits for it, so no process or zombie outlives it.
pub(crate) struct Running<T> {
    child: Child,
    items: Option<Receiver<T>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    threads: Vec<JoinHandle<()>>,
    stall: Duration,
    cancel: Option<Cancel>,
}

/// What waiting for the next item gave.
pub(crate) enum Next<T> {
    Item(T),
    /// The reader thread finished (stdout closed).
    End,
    /// Nothing arrived for `stall`.
    Stalled,
    /// The caller's [`Cancel`] was set while waiting.
    Cancelled,
}

/// How often a wait looks at the cancel flag: short enough that a cancelled
/// decode frees its slot at once, long enough to cost nothing.
const CANCEL_POLL: Duration = Duration::from_millis(50);

impl<T: Send + 'static> Running<T> {
    /// Starts `program args` with stdin null and piped stdout/stderr, and
    /// `input` (if any) as its descriptor [`INPUT_FD`]; `read` runs on a
    /// thread with stdout and sends what it parses to `send` (returning when
    /// `send` fails: the receiver was dropped). Waits end early once
    /// `cancel` (if any) is set.
    pub(crate) fn spawn(
        program: &Path,
        args: &[OsString],
        input: Option<&File>,
        stall: Duration,
        cancel: Option<Cancel>,
        read: impl FnOnce(BufReader<ChildStdout>, &dyn Fn(T) -> bool) + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Below 3 (the parent's stdio was closed) the child's stdio would
        // overwrite it before the hook runs: a duplicate is at 3 or above.
        #[cfg(target_os = "linux")]
        let low;
        #[cfg(target_os = "linux")]
        let input = match input {
            Some(file) if std::os::fd::AsRawFd::as_raw_fd(file) < 3 => {
                low = file.try_clone()?;
                Some(&low)
            }
            other => other,
        };
        child_setup(&mut command, input);
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        // One slot: ffmpeg runs at most one frame ahead of the caller, which
        // bounds memory to about two frames however slow the caller is.
        let (tx, rx) = sync_channel::<T>(1);
        let mut threads = Vec::new();
        let spawned = std::thread::Builder::new()
            .name("ffmpeg-stdout".into())
            .spawn(move || {
                let send = |item: T| tx.send(item).is_ok();
                read(BufReader::with_capacity(1 << 16, stdout), &send);
            });
        let kept = Arc::clone(&stderr);
        let spawned_err = spawned.and_then(|t| {
            threads.push(t);
            std::thread::Builder::new()
                .name("ffmpeg-stderr".into())
                .spawn(move || keep_last_lines(stderr_pipe, &kept))
        });
        let mut running = Running {
            child,
            items: Some(rx),
            stderr,
            threads,
            stall,
            cancel,
        };
        // On a failed thread spawn `running` drops here, killing the child.
        running.threads.push(spawned_err?);
        Ok(running)
    }

    /// The next item, waiting at most `stall` for it (and no longer than
    /// about [`CANCEL_POLL`] once cancelled).
    pub(crate) fn next(&mut self) -> Next<T> {
        let Some(rx) = &self.items else {
            return Next::End;
        };
        let Some(cancel) = &self.cancel else {
            return match rx.recv_timeout(self.stall) {
                Ok(item) => Next::Item(item),
                Err(RecvTimeoutError::Disconnected) => Next::End,
                Err(RecvTimeoutError::Timeout) => Next::Stalled,
            };
        };
        let mut waited = Duration::ZERO;
        loop {
            if cancel.is_cancelled() {
                return Next::Cancelled;
            }
            let step = CANCEL_POLL.min(self.stall - waited);
            match rx.recv_timeout(step) {
                Ok(item) => return Next::Item(item),
                Err(RecvTimeoutError::Disconnected) => return Next::End,
                Err(RecvTimeoutError::Timeout) => {
                    waited += step;
                    if waited >= self.stall {
                        return Next::Stalled;
                    }
                }
            }
        }
    }

    /// Whether the caller's [`Cancel`] is set.
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(Cancel::is_cancelled)
    }

    /// Waits for the child to exit (after stdout ended) and for the stderr
    /// reader; returns whether it succeeded and its last stderr lines.
    /// Bounded by `stall`: a child that closed stdout but does not exit is
    /// killed (and reported as failed), as it is once cancelled.
    pub(crate) fn finish(mut self) -> (bool, Vec<String>) {
        self.items = None;
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if waited < self.stall && !self.cancelled() => {
                    std::thread::sleep(step);
                    waited += step;
                }
                _ => break None,
            }
        };
        if status.is_some() {
            // The child is gone, so both pipes are closed: the threads end.
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        let ok = status.is_some_and(|s| s.success());
        (ok, self.stderr_lines())
    }

    /// The last lines ffmpeg wrote to stderr so far.
    pub(crate) fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr).iter().cloned().collect()
    }

    /// Kills the child now; `Drop` reaps it. Returns its stderr lines, read
    /// after it died so that nothing it wrote is missed.
    pub(crate) fn kill(mut self) -> Vec<String> {
        self.items = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its pipes are closed now unless it left children holding them
        // (ffmpeg does not, a wrapper script might): give the stderr thread
        // a moment to read the last lines, but never hang on it.
        if let Some(t) = self.threads.pop() {
            for _ in 0..100 {
                if t.is_finished() {
                    let _ = t.join();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.stderr_lines()
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        // Receiver first, so a reader blocked on the full channel wakes up.
        self.items = None;
        // Already exited and reaped children make both calls harmless errors.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The threads are not joined: they end when the pipes close, and a
        // grandchild holding a pipe must not hang the caller.
    }
}

/// The descriptor the child reads its input from (Linux).
#[cfg(target_os = "linux")]
pub(crate) const INPUT_FD: i32 = 3;

/// Linux: `input` becomes the child's descriptor [`INPUT_FD`]; the parent's
/// stays close-on-exec, so no other child inherits it.
///
/// And the child is killed when the thread that started it ends, the
/// whole process included. A signal that ends seer (SIGTERM from a service
/// manager, `kill`, `timeout`) runs no `Drop`, and ffmpeg would otherwise
/// decode on, orphaned, until its next write to the closed pipe, which with
/// a long sampling interval can be minutes of a long video. The thread that
/// spawns waits for the child (every caller reads it to the end or kills it),
/// so it outlives the child's useful life.
#[cfg(target_os = "linux")]
fn child_setup(command: &mut Command, input: Option<&File>) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // glibc and musl both export these; std links the C library already.
    unsafe extern "C" {
        fn prctl(option: i32, ...) -> i32;
        fn getppid() -> i32;
        fn dup2(old: i32, new: i32) -> i32;
        fn fcntl(fd: i32, cmd: i32, ...) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    const F_SETFD: i32 = 2;
    let parent = std::process::id() as i32;
    // Borrowed, not owned: `spawn` returns (the hook has run in the child)
    // before the caller can close it.
    let input = input.map(|f| f.as_raw_fd());
    let hook = move || {
        // SAFETY: PR_SET_PDEATHSIG takes one integer argument, a signal number.
        if unsafe { prctl(PR_SET_PDEATHSIG, SIGKILL) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent died before the prctl took effect: end now.
        // SAFETY: getppid has no preconditions.
        if unsafe { getppid() } != parent {
            // ESRCH ("no such process"), made without allocating.
            return Err(std::io::Error::from_raw_os_error(3));
        }
        if let Some(fd) = input {
            let done = if fd == INPUT_FD {
                // dup2 onto itself would leave close-on-exec set: clear it.
                // SAFETY: F_SETFD takes one integer argument, the flags.
                unsafe { fcntl(fd, F_SETFD, 0) }
            } else {
                // The copy dup2 makes is not close-on-exec.
                // SAFETY: `fd` is open (the parent holds it during spawn);
                // dup2 replaces INPUT_FD in this child atomically.
                unsafe { dup2(fd, INPUT_FD) }
            };
            if done == -1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec and calls only
    // prctl, getppid, dup2 and fcntl, which are async-signal-safe and
    // allocate nothing.
    unsafe {
        command.pre_exec(hook);
    }
}

#[cfg(not(target_os = "linux"))]
fn child_setup(_: &mut Command, _: Option<&File>) {}

fn lock(m: &Mutex<VecDeque<String>>) -> std::sync::MutexGuard<'_, VecDeque<String>> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn keep_last_lines(pipe: impl Read, kept: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded per line: a child writing megabytes without a newline
        // must not grow this buffer without limit.
        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let text: String = text.chars().take(STDERR_LINE_CHARS).collect();
        let mut kept = lock(kept);
        if kept.len() == STDERR_LINES {
            kept.pop_front();
        }
        kept.push_back(text);
    }
}
