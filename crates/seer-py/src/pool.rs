//! The rayon pools seer's Python calls run on, none of them rayon's global one
//! (see the crate docs for why).
//!
//! * [`run`]: the process's shared pool, started by the first call that needs
//!   it and reused after. It is recorded with the id of the process that
//!   started it: a forked child, which inherits the record but none of the
//!   pool's threads, starts a pool of its own instead of waiting on workers
//!   that do not exist.
//! * [`run_interruptible`]: [`run`] for a Python call that may take long: the
//!   calling thread waits with the GIL released and looks for signals
//!   (Ctrl-C) meanwhile, and `op` stops at its next batch when one came.
//! * [`run_transient`]: a pool for one call (loading a model), whose threads
//!   are all joined before it returns, so that constructing a `Model` leaves
//!   no thread behind.
//!
//! Code run on either pool sees it as the current pool: every rayon call in
//! seer's engine, kernels and candle's CPU ops inside `op` stays on it, as long
//! as `op` does not hand work to threads of its own (the engine's
//! decode-ahead pipeline does, which is why [`crate::batch`] drives batches
//! itself).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use rayon::{ThreadPool, ThreadPoolBuildError, ThreadPoolBuilder};
use seer_util::per_process::PerProcess;

use crate::convert::{pool_error, seer_error};

/// The shared pool: a forked child starts its own (see [`PerProcess`]).
static SHARED: PerProcess<ThreadPool> = PerProcess::new();

/// Runs `op` on this process's shared pool, starting the pool if this process
/// has none yet. Blocks the calling thread until `op` returns.
pub fn run<R: Send>(op: impl FnOnce() -> R + Send) -> Result<R, ThreadPoolBuildError> {
    Ok(SHARED
        .get_or_make(|_| true, || builder().build())?
        .install(op))
}

/// How often a waiting call looks for signals.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs `op(cancel)` on the shared pool (as [`run`]) with the GIL released,
/// while the calling thread looks for signals every [`SIGNAL_POLL`]: a
/// signal handler's exception (Ctrl-C's `KeyboardInterrupt`) sets `cancel`,
/// which `op` checks between its batches, and is what the call raises once
/// `op` has returned. Without this a long batch ignored Ctrl-C until its end
/// (Python runs signal handlers only when the native call returns).
///
/// `op` runs on a scoped thread of its own (joined before this returns, so no
/// thread outlives the call) because the calling thread must stay free to
/// wait; signals are only seen on Python's main thread.
pub fn run_interruptible<R: Send>(
    py: Python<'_>,
    op: impl FnOnce(&AtomicBool) -> R + Send,
) -> PyResult<R> {
    let cancel = AtomicBool::new(false);
    let cancel = &cancel;
    py.detach(|| {
        std::thread::scope(|scope| {
            let (done, finished) = mpsc::channel();
            let worker = std::thread::Builder::new()
                .name("seer-call".into())
                .spawn_scoped(scope, move || {
                    let _ = done.send(run(|| op(cancel)));
                })
                .map_err(|e| seer_error(format!("cannot start seer's worker threads: {e}")))?;
            let mut interrupted = None;
            let result = loop {
                match finished.recv_timeout(SIGNAL_POLL) {
                    Ok(result) => break Some(result),
                    Err(RecvTimeoutError::Disconnected) => break None,
                    Err(RecvTimeoutError::Timeout) if interrupted.is_none() => {
                        if let Err(e) = Python::attach(|py| py.check_signals()) {
                            cancel.store(true, Ordering::Relaxed);
                            interrupted = Some(e);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
            };
            // The worker sent nothing only if `op` panicked: raise the panic
            // here, as `run` would have.
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
            if let Some(e) = interrupted {
                return Err(e);
            }
            let result = result
                .ok_or_else(|| seer_error("internal error: seer's call ended without a result"))?;
            result.map_err(pool_error)
        })
    })
}

/// Whether a call running under [`run_interruptible`] was asked to stop.
pub fn cancelled(cancel: &AtomicBool) -> bool {
    cancel.load(Ordering::Relaxed)
}

/// Runs `op` on a pool of its own and returns once every thread of that pool
/// has ended (each is joined).
pub fn run_transient<R: Send>(op: impl FnOnce() -> R + Send) -> Result<R, ThreadPoolBuildError> {
    let handles = Mutex::new(Vec::new());
    let pool = ThreadPoolBuilder::new()
        .thread_name(|i| format!("seer-loader-{i}"))
        .spawn_handler(|thread| {
            let mut spawn = std::thread::Builder::new();
            if let Some(name) = thread.name() {
                spawn = spawn.name(name.to_string());
            }
            if let Some(size) = thread.stack_size() {
                spawn = spawn.stack_size(size);
            }
            let handle = spawn.spawn(|| thread.run())?;
            handles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
            Ok(())
        })
        .build()?;
    let result = pool.install(op);
    // Dropping the pool tells its threads to finish; wait until they have.
    drop(pool);
    let handles = handles.into_inner().unwrap_or_else(PoisonError::into_inner);
    for handle in handles {
        // A worker's panic already reached `install`'s caller; nothing is
        // left to report here.
        let _ = handle.join();
    }
    Ok(result)
}

/// Threads as rayon's default: `RAYON_NUM_THREADS`, else one per core.
fn builder() -> ThreadPoolBuilder {
    ThreadPoolBuilder::new().thread_name(|i| format!("seer-worker-{i}"))
}
