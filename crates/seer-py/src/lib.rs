//! `seer._seer`, the native half of the Python package `seer`: a loaded model
//! behind a frozen (immutable, `Sync`) Python class. The Python half
//! (`python/seer/`) turns paths, bytes, numpy arrays, PIL images and pyarrow
//! tables into the few plain shapes this module takes, and its results into
//! numpy arrays and pyarrow tables.
//!
//! # Threads, the GIL and fork
//!
//! Every method releases the GIL while Rust works ([`Python::detach`]), so
//! Python threads can call one `Model` at once. A call that embeds waits for
//! its work on a thread of its own and looks for signals meanwhile
//! ([`pool::run_interruptible`]): Ctrl-C stops it at the next model batch.
//!
//! seer parallelises with rayon. A rayon pool does not survive `fork()`: the
//! child inherits the pool's bookkeeping but not its threads, and the first
//! parallel job it submits waits forever (PySpark and `multiprocessing` fork
//! workers after import). So this module never touches rayon's global pool and
//! runs all its work on pools of its own (see [`pool`]):
//!
//! * importing the module starts no thread;
//! * constructing a `Model` loads it on a transient pool whose threads have
//!   exited when the constructor returns;
//! * the first `embed_*` or `classify` call in a process starts that process's
//!   shared pool (`RAYON_NUM_THREADS` threads, default one per core), which
//!   later calls reuse. A forked child that calls in finds that the pool
//!   belongs to its parent and starts its own. Batches that run as one part
//!   per thread (`seer_models::nn::split_batch`) add one-thread pools
//!   (`seer-part` threads), also started at first use and once per process.
//!
//! candle, under seer, has a global pool of threads of its own for large
//! element-wise ops, which a forked child lacks (its first such op would spin
//! forever): the package's `__init__.py` sets `CANDLE_NUM_THREADS=1` before
//! anything runs, which keeps that pool threadless (ops run inline).
//!
//! Forking while another thread of the parent is inside a call works as well
//! (the child still starts its own pool), with the caveat of any
//! multi-threaded library: a lock that thread held at the instant of the fork
//! stays held in the child. The pool lookup takes no lock for that reason (a
//! thread looking it up during a fork hung the child); the image decoders'
//! memory budget is held only briefly, which cannot rule it out.

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

mod batch;
mod convert;
mod index;
mod input;
mod model;
mod pool;
mod tasks;

create_exception!(
    seer,
    SeerError,
    PyValueError,
    "An error seer reports: a model that cannot be loaded, an input that cannot be embedded \
     (the message names the input's index, the file and the cause; `index`, `input` and \
     `cause` hold them), or a bad argument."
);

/// Native core of the `seer` package; use `seer.Model`, not this module.
#[pymodule]
mod _seer {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::index::Index;
    #[pymodule_export]
    use super::model::Model;
    #[pymodule_export]
    use super::SeerError;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
