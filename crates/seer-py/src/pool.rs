//! The rayon pools seer's Python calls run on, none of them rayon's global one
//! (see the crate docs for why).
//!
//! * [`run`]: the process's shared pool, started by the first call that needs
//!   it and reused after. It is recorded with the id of the process that
//!   started it: a forked child, which inherits the record but none of the
//!   pool's threads, starts a pool of its own instead of waiting on workers
//!   that do not exist.
//! * [`run_transient`]: a pool for one call (loading a model), whose threads
//!   are all joined before it returns, so that constructing a `Model` leaves
//!   no thread behind.
//!
//! Code run on either pool sees it as the current pool: every rayon call in
//! seer's engine, kernels and candle's CPU ops inside `op` stays on it, as long
//! as `op` does not hand work to threads of its own (the engine's
//! decode-ahead pipeline does, which is why [`crate::batch`] drives batches
//! itself).

use std::sync::{Mutex, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuildError, ThreadPoolBuilder};
use seer_util::per_process::PerProcess;

/// The shared pool: a forked child starts its own (see [`PerProcess`]).
static SHARED: PerProcess<ThreadPool> = PerProcess::new();

/// Runs `op` on this process's shared pool, starting the pool if this process
/// has none yet. Blocks the calling thread until `op` returns.
pub fn run<R: Send>(op: impl FnOnce() -> R + Send) -> Result<R, ThreadPoolBuildError> {
    Ok(SHARED
        .get_or_make(|_| true, || builder().build())?
        .install(op))
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
