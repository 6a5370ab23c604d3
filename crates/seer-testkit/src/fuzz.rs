//! A seeded random-mutation fuzzer for the parsers of model files, for the
//! `#[ignore]`d `fuzz_*` tests of seer-models, seer-tokenizer and seer-engine
//! (no cargo-fuzz: offline, stable Rust). [`crate::fuzz_mutator`] is its
//! sibling for data files (format-aware header edits, an allocation peak);
//! the two were written side by side and could become one.
//!
//! Each harness mutates its seed files (bit flips, interesting bytes,
//! truncation, duplicated or deleted chunks, splices of two seeds and, for
//! JSON, structured edits of values and keys and deep nesting), runs the
//! parser on each input under `catch_unwind`, and saves every input that
//! panics or takes over [`SLOW`] under `/tmp/fuzz-models/<harness>/`. The
//! input being tried is written to `current` first, so one that aborts the
//! process (stack overflow, out of memory) is left there. The harness fails
//! at the end if anything panicked or was slow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// An input that takes longer than this to parse is saved as a hang.
pub const SLOW: Duration = Duration::from_secs(2);

/// xorshift64*: fixed seed, same inputs on every run.
pub struct Rng(u64);

// `next` as xorshift calls it; an `Iterator` would never end.
#[allow(clippy::should_implement_trait)]
impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING: [u8; 8] = [0, 0xff, 0x7f, 0x80, 1, 0xfe, b'\n', b'"'];

/// One to four stacked byte-level mutations of `input`; `seeds` for splices.
pub fn mutate_bytes(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                // A little-endian u32 field set to an extreme.
                let i = rng.below(len);
                let value: u32 = [0, u32::MAX, 0x7fff_ffff, 0x8000_0000, 0x10000][rng.below(5)];
                for (k, b) in value.to_le_bytes().into_iter().enumerate() {
                    if let Some(slot) = v.get_mut(i + k) {
                        *slot = b;
                    }
                }
            }
            3 => v.truncate(rng.below(len + 1)),
            4 if len > 0 => {
                // Duplicate a chunk in place.
                let a = rng.below(len);
                let n = rng.below((len - a).min(4096)) + 1;
                let chunk = v[a..a + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, chunk);
            }
            5 if len > 0 => {
                let a = rng.below(len);
                let n = rng.below((len - a).min(4096)) + 1;
                v.drain(a..a + n);
            }
            6 if !seeds.is_empty() => {
                // Splice: a head of this input and a tail of another seed.
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                // Random byte.
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn extreme_value(rng: &mut Rng) -> Value {
    let pick = rng.below(14);
    let text = match pick {
        0 => "18446744073709551615",
        1 => "-1",
        2 => "-9223372036854775808",
        3 => "0",
        4 => "0.5",
        5 => "1e308",
        6 => "4294967296",
        7 => "2147483648",
        8 => "\"x\"",
        9 => "null",
        10 => "true",
        11 => "[]",
        12 => "{}",
        _ => "1000000000",
    };
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Picks a random node of `v` (pre-order) and applies `f` to it.
fn with_random_node(rng: &mut Rng, v: &mut Value, f: &mut dyn FnMut(&mut Rng, &mut Value)) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|c| nth(c, n)),
            Value::Object(o) => o.values_mut().find_map(|c| nth(c, n)),
            _ => None,
        }
    }
    let mut n = rng.below(count(v));
    if let Some(node) = nth(v, &mut n) {
        f(rng, node);
    }
}

/// A structured mutation of a JSON text (byte mutations when it does not parse,
/// and sometimes anyway).
pub fn mutate_json(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let parsed: Option<Value> = serde_json::from_slice(input).ok();
    let Some(mut v) = parsed.filter(|_| !rng.chance(5)) else {
        return mutate_bytes(rng, input, seeds);
    };
    if rng.chance(25) {
        // Deep nesting: 100,000 `[` around a value or in place of the text.
        let depth = 100_000;
        let mut out = "[".repeat(depth).into_bytes();
        if rng.chance(2) {
            out.extend(serde_json::to_vec(&v).unwrap_or_default());
            out.extend("]".repeat(depth).into_bytes());
        }
        return out;
    }
    for _ in 0..1 + rng.below(3) {
        with_random_node(rng, &mut v, &mut |rng, node| match node {
            Value::Object(o) if !o.is_empty() && rng.chance(2) => {
                // Drop a key, or replace its value.
                let key = o
                    .keys()
                    .nth(rng.below(o.len()))
                    .cloned()
                    .unwrap_or_default();
                if rng.chance(2) {
                    o.remove(&key);
                } else {
                    o.insert(key, extreme_value(rng));
                }
            }
            Value::Array(a) if !a.is_empty() && rng.chance(2) => {
                let i = rng.below(a.len());
                match rng.below(3) {
                    0 => {
                        a.remove(i);
                    }
                    1 => {
                        let c = a[i].clone();
                        a.insert(i, c);
                    }
                    _ => a[i] = extreme_value(rng),
                }
            }
            Value::Number(_) if rng.chance(2) => {
                // Near the original: off by one, negated, scaled.
                let n = node.as_f64().unwrap_or(0.0);
                let v = [n + 1.0, n - 1.0, -n, n * 1000.0, n / 3.0][rng.below(5)];
                *node = serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
            }
            _ => *node = extreme_value(rng),
        });
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// What a harness found.
#[derive(Debug, Default)]
pub struct Findings {
    pub iterations: usize,
    pub accepted: usize,
    pub refused: usize,
    pub panics: Vec<(PathBuf, String)>,
    pub slow: Vec<(PathBuf, Duration)>,
    /// Inputs that asked for one allocation over [`HUGE`] bytes.
    pub huge: Vec<(PathBuf, usize)>,
}

/// An input that makes a single allocation larger than this is saved.
pub const HUGE: usize = 256 << 20;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

/// The largest single allocation made while `f` ran (by any thread: a
/// test that asserts on it allows for the others).
pub fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
    let out = f();
    (out, LARGEST_ALLOCATION.load(Ordering::Relaxed))
}

/// The system allocator, noting the largest request (for [`HUGE`]). A crate
/// that includes this file installs it as its tests' `#[global_allocator]`
/// (where no other one is: without it no allocation is seen as huge).
pub struct Tracking;

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

thread_local! {
    static PANIC_MESSAGE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The parser under test: the index of the seed mutated and the input.
pub type Target<'a> = &'a dyn Fn(usize, &[u8]) -> Result<(), String>;

/// Makes one input from a seed (and the other seeds, for splices).
pub type Mutator = fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8>;

/// Byte mutations, and sometimes a run of 1 to 100,000 copies of one of
/// `snippets` inserted at a random place (structures that nest or repeat).
pub fn mutate_with_snippets(
    rng: &mut Rng,
    input: &[u8],
    seeds: &[Vec<u8>],
    snippets: &[&[u8]],
) -> Vec<u8> {
    let mut v = mutate_bytes(rng, input, seeds);
    if rng.chance(4) {
        let snippet = snippets[rng.below(snippets.len())];
        let times = [1, 2, 40, 1000, 100_000][rng.below(5)];
        let at = rng.below(v.len() + 1);
        v.splice(at..at, snippet.repeat(times));
    }
    v
}

/// Runs `target` on `iterations` mutations of `seeds` made by `mutate` (with
/// the index of the seed mutated),
/// saving what panics or hangs under `/tmp/fuzz-models/<name>/`.
pub fn run(
    name: &str,
    seeds: &[Vec<u8>],
    iterations: usize,
    mutate: Mutator,
    target: Target,
) -> Findings {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let dir = Path::new("/tmp/fuzz-models").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        PANIC_MESSAGE.with(|m| *m.borrow_mut() = format!("{msg} at {at}"));
    }));
    let mut rng = Rng::new(0x5eed_f00d ^ name.len() as u64);
    let mut findings = Findings::default();
    // The seeds themselves first: they must parse.
    for (i, seed) in seeds.iter().enumerate() {
        if let Err(e) = target(i, seed) {
            let _ = std::panic::take_hook();
            std::panic::set_hook(previous);
            panic!("{name}: seed {i} is refused: {e}");
        }
    }
    for i in 0..iterations {
        let which = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[which], seeds);
        let _ = std::fs::write(dir.join("current"), &input);
        LARGEST_ALLOCATION.store(0, Ordering::Relaxed);
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| target(which, &input)));
        let took = start.elapsed();
        findings.iterations += 1;
        match outcome {
            Ok(Ok(())) => findings.accepted += 1,
            Ok(Err(_)) => findings.refused += 1,
            Err(_) => {
                let path = dir.join(format!("panic-{i}"));
                std::fs::write(&path, &input).unwrap();
                let msg = PANIC_MESSAGE.with(|m| m.borrow().clone());
                findings.panics.push((path, msg));
            }
        }
        let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
        if largest > HUGE {
            let path = dir.join(format!("alloc-{i}"));
            std::fs::write(&path, &input).unwrap();
            findings.huge.push((path, largest));
        }
        if took > SLOW {
            let path = dir.join(format!("slow-{i}"));
            std::fs::write(&path, &input).unwrap();
            findings.slow.push((path, took));
        }
    }
    let _ = std::fs::remove_file(dir.join("current"));
    let _ = std::panic::take_hook();
    std::panic::set_hook(previous);
    eprintln!(
        "{name}: {} iterations, {} accepted, {} refused, {} panics, {} slow, {} huge allocations",
        findings.iterations,
        findings.accepted,
        findings.refused,
        findings.panics.len(),
        findings.slow.len(),
        findings.huge.len()
    );
    for (path, bytes) in &findings.huge {
        eprintln!("  allocation {}: {bytes} bytes", path.display());
    }
    for (path, msg) in &findings.panics {
        eprintln!("  panic {}: {msg}", path.display());
    }
    for (path, took) in &findings.slow {
        eprintln!("  slow {}: {took:?}", path.display());
    }
    findings
}

/// Fails the test when `findings` has panics or hangs.
pub fn assert_clean(name: &str, findings: &Findings) {
    assert!(
        findings.panics.is_empty() && findings.slow.is_empty() && findings.huge.is_empty(),
        "{name}: {} panicking, {} slow and {} huge-allocating inputs saved under /tmp/fuzz-models/{name}/",
        findings.panics.len(),
        findings.slow.len(),
        findings.huge.len()
    );
}

/// The files of the committed fixtures (`fixtures/<dir>`, recursively) whose
/// names satisfy `keep`.
pub fn fixture_files(dirs: &[&str], keep: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.file_name().and_then(|n| n.to_str()).is_some_and(keep) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
