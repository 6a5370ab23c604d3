//! Whether f32 products pay on this CPU's tiles: a short timing of the tile
//! loop against AVX-512 FMA on every CPU the process may run on, at once,
//! on the first call (`seer bench` makes it and prints the rates).
//!
//! Why it matters: a split f32 step is six tile products (`Dot::Bf16x3`),
//! so it comes out ahead of the FMA kernels only where the tiles run many
//! times FMA's multiply-adds, and that differs between machines, and
//! between the cores of one, far beyond timing noise. On the Intel Xeon
//! with AMX of family 6 model 207 (2 vCPUs, 2026-12-06) the kernel's inner
//! loop, tiles loaded from L1, ran 13.6-16.2× the FMA chains' rate on one
//! vCPU and 3.7-4.1× on the other in 14 alternating runs, and later both
//! moved between the two every few seconds (FMA steady: the AMX units
//! seemed shared with a busy neighbour); the threads' equal shares wait
//! for the slow one, and the split f32 products ran at 0.73× the AVX-512
//! FMA kernels (`gemm_speed 400`, 2 threads). On family 6 model 167 the
//! split products ran 1.2-1.5× FMA. So the slowest CPU's ratio is what
//! counts, against [`TileRates::SPLIT_FROM`].
//!
//! It informs, it does not decide (`gemm::f32_on_tiles`): with the rate
//! moving by the second, two runs of one command would pick different
//! kernels and differ in their last bits.
//!
//! bf16 and int8 stay on the tiles either way: one tile product a step, 4×
//! FMA's rate still leads the AVX-512 bf16 and int8 dot products (at most 2×
//! and 4× FMA's, with their own loads).

use std::arch::asm;
use std::sync::OnceLock;
use std::time::Instant;

use super::Tiles;
use crate::gemm::TileRates;

/// The slowest of this process's CPUs by the ratio, measured on the first
/// call (about a millisecond); `None` where the tiles are not
/// [`super::available`].
pub(crate) fn rates() -> Option<TileRates> {
    static RATES: OnceLock<Option<TileRates>> = OnceLock::new();
    *RATES.get_or_init(|| {
        if !super::available() {
            return None;
        }
        let per_cpu = on_every_cpu();
        per_cpu
            .into_iter()
            .min_by(|a, b| a.ratio().total_cmp(&b.ratio()))
            .or_else(|| {
                // SAFETY: the tiles are available (checked above); the CPU
                // has AVX-512F (every AMX CPU does; `available` checks BW).
                Some(unsafe { measure() })
            })
    })
}

/// [`measure`] on each CPU of this process's affinity mask, all at once
/// (as the kernels' threads run), each on a new thread pinned to its CPU:
/// plain threads, not rayon's, so a first call from inside the pool waits
/// on nothing the pool must run. Empty where the mask cannot be read, or a
/// thread could not be started or pinned (the caller then times its own).
#[cfg(target_os = "linux")]
fn on_every_cpu() -> Vec<TileRates> {
    use std::sync::{Condvar, Mutex, PoisonError};
    // SAFETY: `set` is a plain bit set the call fills; pid 0 is this thread.
    let cpus: Vec<usize> = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    };
    // The start signal, once every thread is up: whether all of them are.
    let start = (Mutex::new(None::<bool>), Condvar::new());
    std::thread::scope(|scope| {
        let threads: Vec<_> = cpus
            .iter()
            .map(|&cpu| {
                let start = &start;
                std::thread::Builder::new()
                    .name("seer-tile-probe".into())
                    .spawn_scoped(scope, move || {
                        // SAFETY: as above; this thread pins itself to `cpu`.
                        let pinned = unsafe {
                            let mut set: libc::cpu_set_t = std::mem::zeroed();
                            libc::CPU_SET(cpu, &mut set);
                            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
                                == 0
                        };
                        let (lock, ready) = start;
                        let all_up = ready
                            .wait_while(lock.lock().unwrap_or_else(PoisonError::into_inner), |s| {
                                s.is_none()
                            })
                            .unwrap_or_else(PoisonError::into_inner)
                            .unwrap_or(false);
                        // SAFETY: the tiles are available (the caller
                        // checked); AVX-512F as in `rates`.
                        (pinned && all_up).then(|| unsafe { measure() })
                    })
            })
            .collect();
        let all_up = threads.iter().all(|t| t.is_ok());
        *start.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(all_up);
        start.1.notify_all();
        threads
            .into_iter()
            .map(|t| t.ok()?.join().ok().flatten())
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    })
}

/// Other systems: the calling thread only.
#[cfg(not(target_os = "linux"))]
fn on_every_cpu() -> Vec<TileRates> {
    Vec::new()
}

/// Loop iterations per timing: 4,000 tile products (60 µs at the slow
/// machine's rate), and as many FMA instructions times 12.
const ITERATIONS: usize = 1000;

/// Best of five alternating timings of each, after one untimed pass of
/// each: a preempted pass only lowers its own figure.
///
/// # Safety
/// The tiles are [`super::available`]; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn measure() -> TileRates {
    // SAFETY: the function's contract.
    let _tiles = unsafe { Tiles::configure() };
    // Four tiles' worth (4 KiB) of zeros: the loads' source, in L1.
    let source = vec![super::Line([0; 64]); 64];
    let (mut tiles, mut fma) = (0f64, 0f64);
    for pass in 0..6 {
        let start = Instant::now();
        // SAFETY: the tiles are configured; every load reads inside `source`.
        unsafe { tile_loop(source.as_ptr().cast(), ITERATIONS) };
        let tile_rate = (ITERATIONS * 4 * 16 * 16 * 32 * 2) as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        // SAFETY: AVX-512F by the contract.
        unsafe { fma_loop(ITERATIONS) };
        let fma_rate = (ITERATIONS * 12 * 16 * 2) as f64 / start.elapsed().as_secs_f64();
        if pass > 0 {
            tiles = tiles.max(tile_rate / 1e9);
            fma = fma.max(fma_rate / 1e9);
        }
    }
    TileRates { tiles, fma }
}

/// `iterations` of the kernel's inner loop: A and B tiles loaded, four
/// products into four accumulators.
///
/// # Safety
/// Tiles are configured on this thread; `source` is valid for reads of 4 KiB.
unsafe fn tile_loop(source: *const u8, iterations: usize) {
    // SAFETY: the function's contract: the loads stay in `source`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{src} + {stride}*1]",
            "tileloadd tmm6, [{src} + {stride}*1 + 1024]",
            "tileloadd tmm5, [{src} + {stride}*1 + 2048]",
            "tileloadd tmm7, [{src} + {stride}*1 + 3072]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "dec {n}",
            "jnz 2b",
            src = in(reg) source,
            stride = in(reg) 64usize,
            n = inout(reg) iterations.max(1) => _,
            options(nostack, readonly),
        )
    }
}

/// `iterations` of twelve independent 16-lane FMAs (two ports × four cycles
/// of latency, with room).
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop(iterations: usize) {
    // SAFETY: registers only; AVX-512F by the contract.
    unsafe {
        asm!(
            "vxorps zmm0, zmm0, zmm0",
            "vxorps zmm1, zmm1, zmm1",
            "vxorps zmm2, zmm2, zmm2",
            "vxorps zmm3, zmm3, zmm3",
            "vxorps zmm4, zmm4, zmm4",
            "vxorps zmm5, zmm5, zmm5",
            "vxorps zmm6, zmm6, zmm6",
            "vxorps zmm7, zmm7, zmm7",
            "vxorps zmm8, zmm8, zmm8",
            "vxorps zmm9, zmm9, zmm9",
            "vxorps zmm10, zmm10, zmm10",
            "vxorps zmm11, zmm11, zmm11",
            "vxorps zmm12, zmm12, zmm12",
            "vxorps zmm13, zmm13, zmm13",
            "2:",
            "vfmadd231ps zmm0, zmm12, zmm13",
            "vfmadd231ps zmm1, zmm12, zmm13",
            "vfmadd231ps zmm2, zmm12, zmm13",
            "vfmadd231ps zmm3, zmm12, zmm13",
            "vfmadd231ps zmm4, zmm12, zmm13",
            "vfmadd231ps zmm5, zmm12, zmm13",
            "vfmadd231ps zmm6, zmm12, zmm13",
            "vfmadd231ps zmm7, zmm12, zmm13",
            "vfmadd231ps zmm8, zmm12, zmm13",
            "vfmadd231ps zmm9, zmm12, zmm13",
            "vfmadd231ps zmm10, zmm12, zmm13",
            "vfmadd231ps zmm11, zmm12, zmm13",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iterations.max(1) => _,
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm13") _,
            options(nostack, nomem),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_measured_where_the_tiles_are() {
        let Some(r) = rates() else {
            assert!(!super::super::available());
            return;
        };
        eprintln!(
            "tiles {:.0} GFLOP/s, FMA {:.0}, ratio {:.1}",
            r.tiles,
            r.fma,
            r.ratio()
        );
        // Both loops did work at a plausible rate (a core does at least a
        // few GFLOP/s of either).
        assert!(r.tiles > 10.0 && r.fma > 1.0, "{r:?}");
        assert!(r.ratio().is_finite() && r.ratio() > 0.0, "{r:?}");
    }
}
