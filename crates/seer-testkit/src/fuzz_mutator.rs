//! Seeded random-mutation engine for the `#[ignore]`d `fuzz_` harnesses of
//! data files (seer-image, seer-index, seer-data, seer-engine's COCO masks;
//! no cargo-fuzz: stable Rust, offline). See [`crate::fuzz`] for its sibling
//! for model files.

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(u64);

// `next` as xorshift calls it; an `Iterator` would never end.
#[allow(clippy::should_implement_trait)]
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING_U8: [u8; 6] = [0, 0xFF, 0x7F, 0x80, 1, 0xFE];
const INTERESTING_U32: [u32; 12] = [
    0,
    1,
    0xFF,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x1_0000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0xFFFF_FFFE,
    16384,
];

/// Writes `v` as a `width`-byte integer (1, 2 or 4) at `at`, either endianness.
pub fn put_int(buf: &mut [u8], at: usize, width: usize, v: u32, big: bool) {
    let bytes = if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    };
    let src = if big {
        &bytes[4 - width..]
    } else {
        &bytes[..width]
    };
    if let Some(dst) = buf.get_mut(at..at + width) {
        dst.copy_from_slice(src);
    }
}

pub fn interesting_u32(rng: &mut Rng) -> u32 {
    INTERESTING_U32[rng.below(INTERESTING_U32.len())]
}

/// One generic mutation of `buf`; `other` is another seed for splicing.
pub fn mutate_once(buf: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if buf.is_empty() {
        buf.push(INTERESTING_U8[rng.below(INTERESTING_U8.len())]);
        return;
    }
    // Mutations cluster near the start, where the headers are, half the time.
    let pos = |rng: &mut Rng, len: usize| {
        if rng.chance(2) {
            rng.below(len.min(256))
        } else {
            rng.below(len)
        }
    };
    match rng.below(9) {
        0 | 1 => {
            for _ in 0..1 + rng.below(8) {
                let p = pos(rng, buf.len());
                buf[p] ^= 1 << rng.below(8);
            }
        }
        2 => {
            let p = pos(rng, buf.len());
            buf[p] = INTERESTING_U8[rng.below(INTERESTING_U8.len())];
        }
        3 => {
            let width = [1, 2, 4][rng.below(3)];
            let p = pos(rng, buf.len());
            let v = interesting_u32(rng);
            put_int(buf, p, width, v, rng.chance(2));
        }
        4 => {
            let n = rng.below(buf.len());
            buf.truncate(n);
        }
        5 => {
            // Duplicate a chunk in place (or elsewhere).
            let a = rng.below(buf.len());
            let n = 1 + rng.below((buf.len() - a).min(512));
            let chunk = buf[a..a + n].to_vec();
            let at = if rng.chance(2) {
                a
            } else {
                rng.below(buf.len() + 1)
            };
            let reps = 1 + rng.below(3);
            for _ in 0..reps {
                buf.splice(at..at, chunk.iter().copied());
            }
        }
        6 => {
            let a = rng.below(buf.len());
            let n = 1 + rng.below((buf.len() - a).min(512));
            buf.drain(a..a + n);
        }
        7 if !other.is_empty() => {
            // Splice: our head, the other seed's tail.
            let a = rng.below(buf.len());
            let b = rng.below(other.len());
            buf.truncate(a);
            buf.extend_from_slice(&other[b..]);
        }
        _ => {
            // Insert random bytes.
            let p = rng.below(buf.len() + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            buf.splice(p..p, bytes);
        }
    }
}

/// Where fuzz findings go: `/tmp/fuzz-data/<name>/`.
pub fn findings_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("fuzz-data").join(name);
    std::fs::create_dir_all(&dir).expect("create findings dir");
    dir
}

/// The panic message of a `catch_unwind` payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic>".into())
}

/// Counts a harness' outcomes and keeps the interesting inputs on disk.
pub struct Findings {
    dir: std::path::PathBuf,
    pub panics: Vec<String>,
    pub slow: usize,
    pub big_alloc: usize,
    pub ok: usize,
    pub err: usize,
    /// Inputs taking longer are saved as `slow-N.bin` (default [`SLOW`]).
    pub slow_after: std::time::Duration,
}

/// An input is "slow" past this; a hang leaves `current.bin` behind.
pub const SLOW: std::time::Duration = std::time::Duration::from_secs(1);

impl Findings {
    pub fn new(name: &str) -> Self {
        Findings {
            dir: findings_dir(name),
            panics: Vec::new(),
            slow: 0,
            big_alloc: 0,
            ok: 0,
            err: 0,
            slow_after: SLOW,
        }
    }
    pub fn current(&self, input: &[u8]) {
        // Written before each run, so a hang or abort leaves the input behind.
        let _ = std::fs::write(self.dir.join("current.bin"), input);
    }
    /// Runs `f` on `input`, catching panics, timing it and recording the
    /// largest single allocation (see `PEAK_ALLOC`).
    pub fn run<E: std::fmt::Display>(
        &mut self,
        iter: usize,
        input: &[u8],
        f: impl FnOnce() -> Result<(), E>,
    ) {
        self.current(input);
        PEAK_ALLOC.store(0, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let took = t.elapsed();
        let peak = PEAK_ALLOC.load(std::sync::atomic::Ordering::Relaxed);
        match r {
            Ok(Ok(())) => self.ok += 1,
            Ok(Err(_)) => self.err += 1,
            Err(p) => {
                let msg = panic_message(&*p);
                let file = self.dir.join(format!("panic-{iter}.bin"));
                let _ = std::fs::write(&file, input);
                eprintln!("PANIC iter {iter}: {msg} -> {}", file.display());
                self.panics.push(msg);
            }
        }
        if took > self.slow_after {
            self.slow += 1;
            let file = self.dir.join(format!("slow-{iter}.bin"));
            let _ = std::fs::write(&file, input);
            eprintln!("SLOW iter {iter}: {took:?} -> {}", file.display());
        }
        if peak > BIG_ALLOC {
            self.big_alloc += 1;
            let file = self.dir.join(format!("alloc-{iter}.bin"));
            let _ = std::fs::write(&file, input);
            eprintln!("BIG ALLOC iter {iter}: {peak} bytes -> {}", file.display());
        }
    }
    pub fn finish(&self, name: &str, iterations: usize) {
        eprintln!(
            "fuzz {name}: {iterations} inputs, {} ok, {} errors, {} panics, {} slow, {} big allocations (findings in {})",
            self.ok,
            self.err,
            self.panics.len(),
            self.slow,
            self.big_alloc,
            self.dir.display()
        );
        assert!(
            self.panics.is_empty() && self.slow == 0 && self.big_alloc == 0,
            "fuzz {name} found problems: {:?}",
            self.panics
        );
    }
}

/// A single allocation larger than this is a finding: no input of a few KB
/// should make a parser ask for 1 GiB at once.
pub const BIG_ALLOC: usize = 1 << 30;

pub static PEAK_ALLOC: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Pass-through allocator that records the largest single request, so the
/// harness can flag inputs that make a parser allocate absurd amounts. Each
/// crate installs it as its unit-test binary's `#[global_allocator]` where no
/// other test code has one (seer-engine's has another, so there `PEAK_ALLOC`
/// stays 0 and big allocations go unseen).
pub struct PeakAlloc;

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl std::alloc::GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        PEAK_ALLOC.fetch_max(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        PEAK_ALLOC.fetch_max(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        PEAK_ALLOC.fetch_max(new, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

/// Silences the default panic hook while `f` runs (the harness reports
/// panics itself), restoring it after.
pub fn quiet_panics<T>(f: impl FnOnce() -> T) -> T {
    let old = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(old);
    r
}

/// Reads every regular file of `dirs` (skipping missing dirs) up to
/// `max_bytes` each, sorted by path so runs are reproducible.
pub fn read_seeds(dirs: &[&str], max_bytes: u64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let Ok(md) = std::fs::metadata(&p) else {
                continue;
            };
            if md.is_file() && md.len() <= max_bytes {
                if let Ok(b) = std::fs::read(&p) {
                    out.push((p.display().to_string(), b));
                }
            }
        }
    }
    out
}
