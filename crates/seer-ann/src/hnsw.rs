//! Hierarchical Navigable Small World graph (Malkov & Yashunin) over dot-product
//! similarity, with f16 vector storage, parallel batch insertion, tombstone deletes
//! with neighbour repair, and incremental persistence (see `persist.rs`).
//!
//! Layout (hnswlib-like, flat arrays so a save is a few large writes):
//! - node slots `0..n_slots`, each FREE (reusable), LIVE, or DELETED (tombstone);
//! - layer-0 links in one flat `AtomicU32` array, `m0 + 1` words per slot (count, then ids);
//! - upper-layer links in a small per-slot box (`level * (m + 1)` words), empty for most;
//! - vectors as f16 bits, `dim` per slot.
//!
//! Concurrency: searches take `&self`. Inserts take `&mut self`, but a batch links its
//! nodes from several threads at once through `&self`: link words are atomics (so a
//! reader racing a writer sees some mix of old and new ids, all valid), list rewrites
//! are serialised by striped mutexes, and vectors are written before linking starts.

use std::cell::RefCell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AnnError;
use crate::persist::PersistState;
use crate::simd;

/// Highest layer a node can be given (the chance of exceeding it is ~M^-16).
pub(crate) const MAX_LEVEL: usize = 15;
pub(crate) const NO_NODE: u32 = u32::MAX;

pub(crate) const FREE: u8 = 0;
pub(crate) const LIVE: u8 = 1;
pub(crate) const DELETED: u8 = 2;

/// Slot changed (links, state, id or level) since the last save.
pub(crate) const DIRTY_META: u8 = 1;
/// Slot's vector changed since the last save.
pub(crate) const DIRTY_VEC: u8 = 2;

const LOCK_STRIPES: usize = 4096;

/// Tombstones are repaired and their slots reclaimed once they make up this
/// fraction of all occupied slots (they cost search work and memory, not correctness).
const AUTO_CONSOLIDATE_FRACTION: f64 = 0.2;

/// Candidate list size on the upper layers, for searches (capped at their `ef`)
/// and inserts (capped at `ef_construction`) alike.
///
/// The textbook HNSW (and hnswlib, and usearch) descends the upper layers greedily,
/// keeping only the single closest node. On clustered (CLIP-like) data an upper
/// layer is a sparse sample (1 node in `m`, `m^2`, ...) whose greedy walk often
/// stops in a neighbouring cluster. Layer 0 then starts there and, with a small
/// `ef`, fills its candidate list from the wrong cluster and never leaves it: 64 of
/// 1000 queries had recall@10 below 0.5 at ef 32 on 1M x 512 (`ann_bench`), as did
/// 59-63 with hnswlib on the same vectors. Inserts get lost the same way, which is
/// worse: such a node links only to far nodes, its own cluster never links back,
/// and no later search finds it (recall stopped at 0.989 however large the ef).
///
/// Best-first searches of width 8 on the upper layers, each seeded with all
/// results of the layer above, fix both. Same 1M set, same m and ef_construction:
/// recall@10 0.925 -> 0.997 at ef 32 for 13% more distance computations per query
/// (627 -> 709), and 0.9993 from ef 64 on, which is the f16-storage ceiling.
/// Widths 4, 6, 8, 12, 16, 32 and 64 were measured; see README.md.
const UPPER_EF: usize = 8;

/// HNSW construction and search parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node on upper layers; layer 0 allows `2 * m`. Memory and build time
    /// grow with it; recall on hard (high intrinsic dimension) data improves.
    pub m: usize,
    /// Candidate list size while inserting. Higher = better graph, slower build.
    pub ef_construction: usize,
    /// Default candidate list size while searching (overridable per query);
    /// raised to `k` when smaller.
    pub ef_search: usize,
    /// Seed for level assignment; same seed + same single-threaded operations =
    /// identical index.
    pub seed: u64,
}

impl Default for HnswParams {
    /// Chosen by measurement at 1M x 512 on 2 cores (see README.md / `ann_bench`):
    /// on clustered CLIP-like data m=32 beat m=16 on both recall (0.975 vs 0.947 at
    /// ef 128) and build time (less time lost in poorly connected regions);
    /// ef_construction 100 keeps the 1M build to minutes. ef_search 96: with the
    /// upper-layer searches of `UPPER_EF`, recall@10 reaches the f16 ceiling
    /// (0.9993) from ef 64 on that set; 96 leaves a margin for data less tidy than
    /// it, at ~0.45 ms p50 (ef 192, the default before, took ~0.75 ms).
    fn default() -> Self {
        HnswParams {
            m: 32,
            ef_construction: 100,
            ef_search: 96,
            seed: 0x5EE5_A11C_0FFE_E000,
        }
    }
}

impl HnswParams {
    pub(crate) fn validate(&self) -> Result<(), AnnError> {
        if !(2..=256).contains(&self.m) {
            return Err(AnnError::InvalidParams(format!(
                "m must be in 2..=256, got {}",
                self.m
            )));
        }
        if self.ef_construction == 0 || self.ef_construction > 1 << 20 {
            return Err(AnnError::InvalidParams(format!(
                "ef_construction must be in 1..=1048576, got {}",
                self.ef_construction
            )));
        }
        if self.ef_search == 0 || self.ef_search > 1 << 20 {
            return Err(AnnError::InvalidParams(format!(
                "ef_search must be in 1..=1048576, got {}",
                self.ef_search
            )));
        }
        Ok(())
    }
}

/// A candidate: `d` is the negated dot product (lower = closer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cand {
    pub d: f32,
    pub node: u32,
}

impl Cand {
    fn key(&self, other: &Self) -> CmpOrdering {
        self.d.total_cmp(&other.d).then(self.node.cmp(&other.node))
    }
}

/// Max-heap order by distance (pops the farthest).
#[derive(Clone, Copy)]
struct Far(Cand);
impl Ord for Far {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.0.key(&o.0)
    }
}
impl PartialOrd for Far {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Far {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Far {}

/// Min-heap order by distance (pops the nearest).
#[derive(Clone, Copy)]
struct Near(Cand);
impl Ord for Near {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        o.0.key(&self.0)
    }
}
impl PartialOrd for Near {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Near {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Near {}

/// Per-thread visited marks, reset in O(1) by bumping an epoch.
struct Visited {
    marks: Vec<u16>,
    epoch: u16,
}

impl Visited {
    fn prepare(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }
    /// True if `i` was not yet visited (and marks it).
    #[inline]
    fn insert(&mut self, i: u32) -> bool {
        let m = &mut self.marks[i as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { marks: Vec::new(), epoch: 0 }) };
}

/// Run `f` with this thread's visited set (or a fresh one if it is already in use,
/// e.g. a search started from inside a search filter).
fn with_visited<R>(n: usize, f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            v.prepare(n);
            f(&mut v)
        }
        Err(_) => {
            let mut v = Visited {
                marks: Vec::new(),
                epoch: 0,
            };
            v.prepare(n);
            f(&mut v)
        }
    })
}

pub(crate) use seer_util::rng::splitmix64;

thread_local! {
    /// Query-to-node distances computed on this thread (see [`Hnsw::search_counted`]).
    static DISTANCES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// An HNSW index mapping external `u64` ids to vectors, searched by dot product.
///
/// Vectors should be L2-normalised (dot = cosine); they are stored as f16.
pub struct Hnsw {
    pub(crate) dim: usize,
    pub(crate) params: HnswParams,
    /// f16 bits, `dim` per slot.
    pub(crate) vectors: Vec<u16>,
    pub(crate) ids: Vec<u64>,
    pub(crate) state: Vec<u8>,
    pub(crate) levels: Vec<u8>,
    /// `m0 + 1` words per slot: count, then neighbour slots.
    pub(crate) links0: Vec<AtomicU32>,
    /// Per slot, `level * (m + 1)` words for layers 1..=level.
    pub(crate) upper: Vec<Box<[AtomicU32]>>,
    pub(crate) dirty: Vec<AtomicU8>,
    pub(crate) id_map: HashMap<u64, u32>,
    pub(crate) free: Vec<u32>,
    pub(crate) n_deleted: usize,
    /// Entry point packed as `level << 32 | slot` (slot = NO_NODE when empty).
    pub(crate) entry: AtomicU64,
    /// Counts insertions; seeds each new node's level so runs are reproducible.
    pub(crate) insert_counter: u64,
    entry_lock: Mutex<()>,
    locks: Box<[Mutex<()>]>,
    pub(crate) persist: Mutex<Option<PersistState>>,
    /// `ef_search` changed since the last save.
    pub(crate) params_dirty: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Hnsw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hnsw")
            .field("dim", &self.dim)
            .field("params", &self.params)
            .field("len", &self.len())
            .field("deleted", &self.n_deleted)
            .field("slots", &self.n_slots())
            .finish()
    }
}

pub(crate) fn pack_entry(node: u32, level: usize) -> u64 {
    ((level as u64) << 32) | node as u64
}

fn lock<'a>(m: &'a Mutex<()>) -> MutexGuard<'a, ()> {
    // A panic while holding a stripe lock leaves nothing half-written that matters
    // (link words are individually valid), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hnsw {
    /// An empty index. Invalid parameters are clamped into range (see
    /// [`Hnsw::try_new`] for an error instead).
    pub fn new(dim: usize, params: HnswParams) -> Self {
        let p = HnswParams {
            m: params.m.clamp(2, 256),
            ef_construction: params.ef_construction.clamp(1, 1 << 20),
            ef_search: params.ef_search.clamp(1, 1 << 20),
            seed: params.seed,
        };
        Self::empty(dim, p)
    }

    /// Like [`Hnsw::new`] but rejects out-of-range parameters or `dim == 0`.
    pub fn try_new(dim: usize, params: HnswParams) -> Result<Self, AnnError> {
        params.validate()?;
        if dim == 0 {
            return Err(AnnError::InvalidParams("dim must be > 0".into()));
        }
        Ok(Self::empty(dim, params))
    }

    pub(crate) fn empty(dim: usize, params: HnswParams) -> Self {
        Hnsw {
            dim,
            params,
            vectors: Vec::new(),
            ids: Vec::new(),
            state: Vec::new(),
            levels: Vec::new(),
            links0: Vec::new(),
            upper: Vec::new(),
            dirty: Vec::new(),
            id_map: HashMap::new(),
            free: Vec::new(),
            n_deleted: 0,
            entry: AtomicU64::new(pack_entry(NO_NODE, 0)),
            insert_counter: 0,
            entry_lock: Mutex::new(()),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            persist: Mutex::new(None),
            params_dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of live (not deleted) items.
    pub fn len(&self) -> usize {
        self.id_map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.id_map.is_empty()
    }

    pub fn params(&self) -> &HnswParams {
        &self.params
    }

    /// Change the default search breadth (it is not a build parameter).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.params.ef_search = ef.clamp(1, 1 << 20);
        self.params_dirty.store(true, Ordering::Relaxed);
    }

    /// Tombstones not yet reclaimed by [`Hnsw::consolidate`].
    pub fn deleted_count(&self) -> usize {
        self.n_deleted
    }

    pub fn contains(&self, id: u64) -> bool {
        self.id_map.contains_key(&id)
    }

    /// Live ids, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.id_map.keys().copied()
    }

    /// The stored (f16-rounded) vector for `id`.
    pub fn get(&self, id: u64) -> Option<Vec<f32>> {
        let slot = *self.id_map.get(&id)?;
        Some(
            self.vec(slot)
                .iter()
                .map(|&h| simd::f16_to_f32(h))
                .collect(),
        )
    }

    /// Approximate heap memory held by the index, in bytes.
    pub fn memory_bytes(&self) -> usize {
        let upper: usize = self.upper.iter().map(|b| b.len() * 4).sum();
        self.vectors.capacity() * 2
            + self.ids.capacity() * 8
            + self.state.capacity()
            + self.levels.capacity()
            + self.dirty.capacity()
            + self.links0.capacity() * 4
            + self.upper.capacity() * std::mem::size_of::<Box<[AtomicU32]>>()
            + upper
            + self.id_map.capacity() * 16
            + self.free.capacity() * 4
    }

    // ---- internal accessors ------------------------------------------------

    #[inline]
    pub(crate) fn n_slots(&self) -> usize {
        self.ids.len()
    }

    #[inline]
    pub(crate) fn m0(&self) -> usize {
        self.params.m * 2
    }

    #[inline]
    pub(crate) fn cap(&self, layer: usize) -> usize {
        if layer == 0 {
            self.m0()
        } else {
            self.params.m
        }
    }

    #[inline]
    pub(crate) fn vec(&self, slot: u32) -> &[u16] {
        let s = slot as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    #[inline]
    pub(crate) fn link_words(&self, slot: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let w = self.m0() + 1;
            let s = slot as usize * w;
            &self.links0[s..s + w]
        } else {
            let w = self.params.m + 1;
            let s = (layer - 1) * w;
            &self.upper[slot as usize][s..s + w]
        }
    }

    /// Neighbour slots of `slot` at `layer` (a snapshot; may race with writers).
    #[inline]
    pub(crate) fn neighbours(&self, slot: u32, layer: usize) -> impl Iterator<Item = u32> + '_ {
        let w = self.link_words(slot, layer);
        let n = (w[0].load(Ordering::Acquire) as usize).min(w.len() - 1);
        w[1..=n].iter().map(|a| a.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn mark_dirty(&self, slot: u32, bits: u8) {
        self.dirty[slot as usize].fetch_or(bits, Ordering::Relaxed);
    }

    fn set_links(&self, slot: u32, layer: usize, ns: &[u32]) {
        let w = self.link_words(slot, layer);
        debug_assert!(ns.len() < w.len());
        for (a, &n) in w[1..].iter().zip(ns) {
            a.store(n, Ordering::Relaxed);
        }
        w[0].store(ns.len() as u32, Ordering::Release);
        self.mark_dirty(slot, DIRTY_META);
    }

    fn stripe(&self, slot: u32) -> &Mutex<()> {
        &self.locks[slot as usize % LOCK_STRIPES]
    }

    #[inline]
    pub(crate) fn load_entry(&self) -> (u32, usize) {
        let e = self.entry.load(Ordering::Acquire);
        (e as u32, (e >> 32) as usize)
    }

    #[inline]
    fn dist_q(&self, q: &[f32], slot: u32) -> f32 {
        DISTANCES.with(|c| c.set(c.get().wrapping_add(1)));
        -simd::dot_f32_f16(q, self.vec(slot))
    }

    #[inline]
    fn dist_nodes(&self, a: u32, b: u32) -> f32 {
        -simd::dot_f16_f16(self.vec(a), self.vec(b))
    }

    fn random_level(&self, counter: u64) -> usize {
        let r = splitmix64(self.params.seed ^ splitmix64(counter));
        // Uniform in (0, 1]: never ln(0).
        let u = seer_util::rng::unit_open0(r);
        let ml = 1.0 / (self.params.m as f64).ln();
        ((-u.ln() * ml) as usize).min(MAX_LEVEL)
    }

    // ---- search ------------------------------------------------------------

    /// The textbook greedy descent of one upper layer, which searches and inserts
    /// no longer use (see `UPPER_EF`); the tests use it to check their fixture.
    #[cfg(test)]
    fn greedy(&self, q: &[f32], mut cur: Cand, layer: usize) -> Cand {
        loop {
            let mut changed = false;
            for nb in self.neighbours(cur.node, layer) {
                let d = self.dist_q(q, nb);
                if d < cur.d {
                    cur = Cand { d, node: nb };
                    changed = true;
                }
            }
            if !changed {
                return cur;
            }
        }
    }

    /// Best-first search of one layer. Every reachable node is traversed, but only
    /// those passing `collect` enter the result list; while that list has fewer
    /// than `ef` entries the search keeps expanding (so tombstones and filtered-out
    /// nodes cost time, never results). Returns nearest first.
    fn search_layer(
        &self,
        q: &[f32],
        eps: &[Cand],
        ef: usize,
        layer: usize,
        visited: &mut Visited,
        collect: &dyn Fn(u32) -> bool,
    ) -> Vec<Cand> {
        let mut cands: BinaryHeap<Near> = BinaryHeap::with_capacity(ef * 2);
        let mut top: BinaryHeap<Far> = BinaryHeap::with_capacity(ef + 1);
        for &ep in eps {
            if !visited.insert(ep.node) {
                continue;
            }
            cands.push(Near(ep));
            if collect(ep.node) {
                top.push(Far(ep));
                if top.len() > ef {
                    top.pop();
                }
            }
        }
        let mut lower = top.peek().map_or(f32::INFINITY, |f| f.0.d);
        let mut fresh: Vec<u32> = Vec::with_capacity(self.m0());
        while let Some(Near(c)) = cands.pop() {
            if c.d > lower && top.len() >= ef {
                break;
            }
            fresh.clear();
            for nb in self.neighbours(c.node, layer) {
                if visited.insert(nb) {
                    simd::prefetch(self.vec(nb));
                    fresh.push(nb);
                }
            }
            for &nb in &fresh {
                let d = self.dist_q(q, nb);
                if top.len() < ef || d < lower {
                    let cand = Cand { d, node: nb };
                    cands.push(Near(cand));
                    if collect(nb) {
                        top.push(Far(cand));
                        if top.len() > ef {
                            top.pop();
                        }
                        lower = top.peek().map_or(f32::INFINITY, |f| f.0.d);
                    }
                }
            }
        }
        top.into_sorted_vec().into_iter().map(|f| f.0).collect()
    }

    fn valid_query(&self, query: &[f32]) -> bool {
        if query.len() != self.dim {
            tracing::warn!(
                query_dim = query.len(),
                dim = self.dim,
                "hnsw search: query dimension mismatch"
            );
            return false;
        }
        query.iter().all(|x| x.is_finite())
    }

    /// Top-k `(id, dot score)`, best first. `ef` = `None` uses `params.ef_search`
    /// (always at least `k`). Returns an empty vector if the query has the wrong
    /// dimension or a non-finite component (see [`Hnsw::try_search`]).
    pub fn search(&self, query: &[f32], k: usize, ef: Option<usize>) -> Vec<(u64, f32)> {
        self.search_impl(query, k, ef, None)
    }

    /// Like [`Hnsw::search`], also returning how many stored vectors the query was
    /// compared with: a measure of search work that, unlike latency, does not depend
    /// on the machine or its load (for benchmarks). Searches started from inside
    /// this one (none, unless a filter does so) would be counted too.
    pub fn search_counted(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
    ) -> (Vec<(u64, f32)>, u64) {
        let before = DISTANCES.with(|c| c.get());
        let found = self.search_impl(query, k, ef, None);
        let after = DISTANCES.with(|c| c.get());
        (found, after.wrapping_sub(before))
    }

    /// Like [`Hnsw::search`], returning only ids for which `keep(id)` is true. The
    /// walk continues until `ef` matching items are found, so a very selective
    /// filter degrades to a (correct) exhaustive graph walk.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        keep: &(dyn Fn(u64) -> bool + Sync),
    ) -> Vec<(u64, f32)> {
        self.search_impl(query, k, ef, Some(keep))
    }

    /// Like [`Hnsw::search`] but reports a dimension mismatch / non-finite query as an error.
    pub fn try_search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
    ) -> Result<Vec<(u64, f32)>, AnnError> {
        if query.len() != self.dim {
            return Err(AnnError::DimMismatch {
                expected: self.dim,
                got: query.len(),
            });
        }
        if !query.iter().all(|x| x.is_finite()) {
            return Err(AnnError::NonFinite { id: u64::MAX });
        }
        Ok(self.search_impl(query, k, ef, None))
    }

    fn search_impl(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<(u64, f32)> {
        if k == 0 || !self.valid_query(query) {
            return Vec::new();
        }
        let (ep, max_level) = self.load_entry();
        if ep == NO_NODE {
            return Vec::new();
        }
        let cur = Cand {
            d: self.dist_q(query, ep),
            node: ep,
        };
        // Never more than there are nodes (bounds allocations for absurd ef / k).
        let ef = ef
            .unwrap_or(self.params.ef_search)
            .max(k)
            .min(self.n_slots());
        // Upper layers: short best-first searches instead of greedy steps (see
        // `UPPER_EF`), each seeded with all results of the layer above. Every node
        // routes here, tombstones and filtered-out ones too; the results only seed
        // the next layer.
        let mut eps = vec![cur];
        let route = |_: u32| true;
        for layer in (1..=max_level).rev() {
            let found = with_visited(self.n_slots(), |vis| {
                self.search_layer(query, &eps, UPPER_EF.min(ef), layer, vis, &route)
            });
            if !found.is_empty() {
                eps = found;
            }
        }
        let collect =
            |n: u32| self.state[n as usize] == LIVE && keep.is_none_or(|f| f(self.ids[n as usize]));
        let found = with_visited(self.n_slots(), |vis| {
            self.search_layer(query, &eps, ef, 0, vis, &collect)
        });
        found
            .into_iter()
            .take(k)
            .map(|c| (self.ids[c.node as usize], -c.d))
            .collect()
    }

    // ---- insertion ---------------------------------------------------------

    /// Heuristic neighbour selection (HNSW paper, algorithm 4): walk candidates
    /// nearest first and keep one only if it is closer to the base than to every
    /// neighbour already kept. This keeps links spread in different directions,
    /// which is what makes clustered data navigable.
    fn select_neighbours(&self, cands: &[Cand], m: usize) -> Vec<u32> {
        if cands.len() <= m {
            return cands.iter().map(|c| c.node).collect();
        }
        let mut sel: Vec<u32> = Vec::with_capacity(m);
        for c in cands {
            if sel.len() >= m {
                break;
            }
            let v = self.vec(c.node);
            let good = sel
                .iter()
                .all(|&s| -simd::dot_f16_f16(v, self.vec(s)) >= c.d);
            if good {
                sel.push(c.node);
            }
        }
        sel
    }

    /// Add `new` to `slot`'s list at `layer`, pruning with the heuristic when full.
    fn add_link(&self, slot: u32, new: u32, layer: usize) {
        let _g = lock(self.stripe(slot));
        let cap = self.cap(layer);
        let w = self.link_words(slot, layer);
        let n = (w[0].load(Ordering::Acquire) as usize).min(cap);
        if w[1..=n].iter().any(|a| a.load(Ordering::Relaxed) == new) {
            return;
        }
        if n < cap {
            w[n + 1].store(new, Ordering::Relaxed);
            w[0].store(n as u32 + 1, Ordering::Release);
            self.mark_dirty(slot, DIRTY_META);
            return;
        }
        let mut cands: Vec<Cand> = w[1..=n]
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .filter(|&x| self.state[x as usize] == LIVE)
            .chain(std::iter::once(new))
            .map(|x| Cand {
                d: self.dist_nodes(slot, x),
                node: x,
            })
            .collect();
        cands.sort_by(|a, b| a.key(b));
        let sel = self.select_neighbours(&cands, cap);
        self.set_links(slot, layer, &sel);
    }

    /// Connect slot `q` (already holding its vector, level and LIVE state) into the graph.
    fn link_node(&self, q: u32, v: &[f32], vis: &mut Visited) {
        let level = self.levels[q as usize] as usize;
        let (mut ep, mut max_level) = self.load_entry();
        // A node that becomes the new top holds the entry lock for its whole
        // insertion (rare: ~1/m^level), so nobody else starts from a half-linked top.
        let mut top_guard = None;
        if level > max_level || ep == NO_NODE {
            top_guard = Some(lock(&self.entry_lock));
            (ep, max_level) = self.load_entry();
            if level <= max_level && ep != NO_NODE {
                top_guard = None;
            }
        }
        if ep == NO_NODE {
            self.entry.store(pack_entry(q, level), Ordering::Release);
            return;
        }
        let cur = Cand {
            d: self.dist_q(v, ep),
            node: ep,
        };
        // Above the node's own level: the same short best-first searches as a query
        // (see `UPPER_EF`). A greedy descent here strands some nodes: inserted from
        // the wrong cluster, they link only to far nodes, and their own cluster
        // never links back, so no search finds them.
        let mut eps = vec![cur];
        let route = |_: u32| true;
        let width = UPPER_EF.min(self.params.ef_construction);
        for layer in (level + 1..=max_level).rev() {
            vis.prepare(self.n_slots());
            let found = self.search_layer(v, &eps, width, layer, vis, &route);
            if !found.is_empty() {
                eps = found;
            }
        }
        let collect = |n: u32| n != q && self.state[n as usize] == LIVE;
        for layer in (0..=level.min(max_level)).rev() {
            vis.prepare(self.n_slots());
            let found =
                self.search_layer(v, &eps, self.params.ef_construction, layer, vis, &collect);
            let sel = self.select_neighbours(&found, self.params.m);
            {
                let _g = lock(self.stripe(q));
                self.set_links(q, layer, &sel);
            }
            for &nb in &sel {
                self.add_link(nb, q, layer);
            }
            if !found.is_empty() {
                eps = found;
            }
        }
        if top_guard.is_some() && level > max_level {
            self.entry.store(pack_entry(q, level), Ordering::Release);
        }
    }

    fn check_vector(&self, id: u64, v: &[f32]) -> Result<(), AnnError> {
        if v.len() != self.dim {
            return Err(AnnError::DimMismatch {
                expected: self.dim,
                got: v.len(),
            });
        }
        if !v.iter().all(|x| x.is_finite() && x.abs() <= 65504.0) {
            return Err(AnnError::NonFinite { id });
        }
        Ok(())
    }

    /// Insert or replace the vector for external id `id`.
    pub fn insert(&mut self, id: u64, vector: &[f32]) -> Result<(), AnnError> {
        self.insert_batch(&[(id, vector)])
    }

    /// Insert or replace many items, linking them on all rayon threads. Items are
    /// validated first: on error nothing is changed. If an id occurs more than once,
    /// the last occurrence wins.
    pub fn insert_batch(&mut self, items: &[(u64, &[f32])]) -> Result<(), AnnError> {
        for (id, v) in items {
            self.check_vector(*id, v)?;
        }
        if items.is_empty() {
            return Ok(());
        }
        // Last occurrence of each id wins.
        let mut last: HashMap<u64, usize> = HashMap::with_capacity(items.len());
        for (i, (id, _)) in items.iter().enumerate() {
            last.insert(*id, i);
        }
        let items: Vec<&(u64, &[f32])> = items
            .iter()
            .enumerate()
            .filter(|(i, (id, _))| last[id] == *i)
            .map(|(_, it)| it)
            .collect();

        self.id_map.reserve(items.len());
        let mut slots = Vec::with_capacity(items.len());
        for (id, v) in items.iter().map(|it| (it.0, it.1)) {
            if let Some(old) = self.id_map.remove(&id) {
                self.state[old as usize] = DELETED;
                self.n_deleted += 1;
                self.mark_dirty(old, DIRTY_META);
            }
            let level = self.random_level(self.insert_counter);
            self.insert_counter += 1;
            let slot = self.alloc_slot(level);
            let dst = &mut self.vectors[slot as usize * self.dim..(slot as usize + 1) * self.dim];
            for (d, &x) in dst.iter_mut().zip(v) {
                *d = simd::f32_to_f16(x);
            }
            self.ids[slot as usize] = id;
            self.state[slot as usize] = LIVE;
            self.mark_dirty(slot, DIRTY_META | DIRTY_VEC);
            self.id_map.insert(id, slot);
            slots.push(slot);
        }

        let this = &*self;
        let n = slots.len();
        let mut start = 0;
        if this.load_entry().0 == NO_NODE {
            with_visited(this.n_slots(), |vis| {
                this.link_node(slots[0], items[0].1, vis)
            });
            start = 1;
        }
        let threads = rayon::current_num_threads();
        if threads <= 1 || n - start < 64 {
            with_visited(this.n_slots(), |vis| {
                for i in start..n {
                    this.link_node(slots[i], items[i].1, vis);
                }
            });
        } else {
            // Hand out items in order from a shared counter so the graph grows in
            // insertion order on every thread (rayon's range splitting would have
            // threads start in the middle of the batch).
            let next = AtomicUsize::new(start);
            rayon::broadcast(|_| {
                with_visited(this.n_slots(), |vis| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    this.link_node(slots[i], items[i].1, vis);
                })
            });
        }
        self.maybe_consolidate();
        Ok(())
    }

    /// A slot for a new node: a reclaimed one if any, else a new one at the end.
    fn alloc_slot(&mut self, level: usize) -> u32 {
        let w = self.m0() + 1;
        let upper: Box<[AtomicU32]> = (0..level * (self.params.m + 1))
            .map(|_| AtomicU32::new(0))
            .collect();
        if let Some(slot) = self.free.pop() {
            let s = slot as usize;
            for a in &self.links0[s * w..(s + 1) * w] {
                a.store(0, Ordering::Relaxed);
            }
            self.upper[s] = upper;
            self.levels[s] = level as u8;
            slot
        } else {
            let slot = self.n_slots();
            assert!(
                slot < NO_NODE as usize,
                "HNSW index is limited to 2^32-1 slots"
            );
            self.vectors.resize(self.vectors.len() + self.dim, 0);
            self.ids.push(0);
            self.state.push(FREE);
            self.levels.push(level as u8);
            self.links0.extend((0..w).map(|_| AtomicU32::new(0)));
            self.upper.push(upper);
            self.dirty.push(AtomicU8::new(0));
            slot as u32
        }
    }

    // ---- deletion ----------------------------------------------------------

    /// Delete `id`. Its node becomes a tombstone at once: it is never returned
    /// again, but still routes searches until [`Hnsw::consolidate`] (run
    /// automatically when tombstones pass 20% of slots) repairs its neighbours'
    /// links and reclaims the slot. Returns false if `id` was not present.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.id_map.remove(&id) else {
            return false;
        };
        self.state[slot as usize] = DELETED;
        self.n_deleted += 1;
        self.mark_dirty(slot, DIRTY_META);
        self.maybe_consolidate();
        true
    }

    fn maybe_consolidate(&mut self) {
        let occupied = self.len() + self.n_deleted;
        if self.n_deleted >= 64
            && self.n_deleted as f64 >= AUTO_CONSOLIDATE_FRACTION * occupied as f64
        {
            self.consolidate();
        }
    }

    /// Repair every link that points at a tombstone (replacing it with the best
    /// nearby live nodes, found among the tombstone's own neighbours, under the same
    /// diversity heuristic as insertion) and reclaim tombstoned slots for reuse.
    /// Runs on all rayon threads; cost ~ scan of all links + a few dot products per
    /// repaired link.
    pub fn consolidate(&mut self) {
        if self.n_deleted == 0 {
            return;
        }
        let this = &*self;
        (0..this.n_slots() as u32).into_par_iter().for_each(|u| {
            if this.state[u as usize] == LIVE {
                for layer in 0..=this.levels[u as usize] as usize {
                    this.repair(u, layer);
                }
            }
        });
        let w = self.m0() + 1;
        for s in 0..self.n_slots() {
            if self.state[s] == DELETED {
                self.state[s] = FREE;
                self.levels[s] = 0;
                self.ids[s] = 0;
                self.upper[s] = Box::new([]);
                self.links0[s * w].store(0, Ordering::Relaxed);
                self.vectors[s * self.dim..(s + 1) * self.dim].fill(0);
                self.mark_dirty(s as u32, DIRTY_META | DIRTY_VEC);
                self.free.push(s as u32);
            }
        }
        // Reuse low slots first (pop takes from the end).
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        self.n_deleted = 0;
        let (ep, _) = self.load_entry();
        if ep == NO_NODE || self.state[ep as usize] != LIVE {
            let best = (0..self.n_slots())
                .filter(|&s| self.state[s] == LIVE)
                .max_by_key(|&s| (self.levels[s], std::cmp::Reverse(s)));
            let e = match best {
                Some(s) => pack_entry(s as u32, self.levels[s] as usize),
                None => pack_entry(NO_NODE, 0),
            };
            self.entry.store(e, Ordering::Release);
        }
    }

    /// Replace links from live `u` to tombstones at `layer`.
    fn repair(&self, u: u32, layer: usize) {
        let ns: Vec<u32> = self.neighbours(u, layer).collect();
        if ns.iter().all(|&n| self.state[n as usize] == LIVE) {
            return;
        }
        let mut kept: Vec<u32> = ns
            .iter()
            .copied()
            .filter(|&n| self.state[n as usize] == LIVE)
            .collect();
        let mut pool: Vec<u32> = ns
            .iter()
            .filter(|&&t| self.state[t as usize] == DELETED)
            .flat_map(|&t| self.neighbours(t, layer))
            .filter(|&c| c != u && self.state[c as usize] == LIVE && !kept.contains(&c))
            .collect();
        pool.sort_unstable();
        pool.dedup();
        let mut cands: Vec<Cand> = pool
            .into_iter()
            .map(|c| Cand {
                d: self.dist_nodes(u, c),
                node: c,
            })
            .collect();
        cands.sort_by(|a, b| a.key(b));
        let cap = self.cap(layer);
        let mut added = 0;
        for c in &cands {
            if kept.len() >= cap {
                break;
            }
            let v = self.vec(c.node);
            if kept
                .iter()
                .all(|&s| -simd::dot_f16_f16(v, self.vec(s)) >= c.d)
            {
                kept.push(c.node);
                added += 1;
            }
        }
        // Never let a repair leave a node with fewer ways out than it had dead links
        // replaced by nothing at all: take the closest candidate regardless.
        if added == 0 && kept.len() < cap {
            if let Some(c) = cands.first() {
                kept.push(c.node);
            }
        }
        self.set_links(u, layer, &kept);
    }

    // ---- persistence hooks -------------------------------------------------

    /// Rebuild the derived state (id map, free list, counters) after loading.
    pub(crate) fn rebuild_derived(&mut self) {
        self.id_map = HashMap::with_capacity(self.n_slots());
        self.free.clear();
        self.n_deleted = 0;
        for s in 0..self.n_slots() {
            match self.state[s] {
                LIVE => {
                    self.id_map.insert(self.ids[s], s as u32);
                }
                DELETED => self.n_deleted += 1,
                _ => self.free.push(s as u32),
            }
        }
        self.free.reverse();
        if self.dirty.len() != self.n_slots() {
            self.dirty = (0..self.n_slots()).map(|_| AtomicU8::new(0)).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(deg: f32) -> Vec<f32> {
        let r = deg.to_radians();
        vec![r.cos(), r.sin()]
    }

    /// A hand-made two-layer graph where the greedy step on layer 1 stops at a
    /// local minimum (X) whose layer-0 component does not hold the answer (T).
    /// Slots: 0 = E (entry, 90°), 1 = X (40°), 2 = Y (80°), 3 = T (5°), 4 = X2 (50°);
    /// the query is at 0°. Layer 1: E-X, E-Y, Y-T. Layer 0: X-X2 and Y-T only.
    fn trap() -> Hnsw {
        let angles = [90.0, 40.0, 80.0, 5.0, 50.0];
        let vecs: Vec<Vec<f32>> = angles.iter().map(|&a| at(a)).collect();
        let items: Vec<(u64, &[f32])> = vecs
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, v.as_slice()))
            .collect();
        let mut h = Hnsw::new(2, HnswParams::default());
        h.insert_batch(&items).unwrap();
        let levels = [1u8, 1, 1, 1, 0];
        for (s, &l) in levels.iter().enumerate() {
            h.levels[s] = l;
            h.upper[s] = (0..l as usize * (h.params.m + 1))
                .map(|_| AtomicU32::new(0))
                .collect();
        }
        let layer1: [&[u32]; 4] = [&[1, 2], &[0], &[0, 3], &[2]];
        for (s, ns) in layer1.iter().enumerate() {
            h.set_links(s as u32, 1, ns);
        }
        let layer0: [&[u32]; 5] = [&[], &[4], &[3], &[2], &[1]];
        for (s, ns) in layer0.iter().enumerate() {
            h.set_links(s as u32, 0, ns);
        }
        h.entry.store(pack_entry(0, 1), Ordering::Release);
        h
    }

    #[test]
    fn layer1_search_escapes_a_greedy_local_minimum() {
        let h = trap();
        let q = at(0.0);
        // Greedy on layer 1 would stop at X (its only layer-1 neighbour, E, is
        // farther from the query) and layer 0 would then return X.
        let greedy = h.greedy(
            &q,
            Cand {
                d: h.dist_q(&q, 0),
                node: 0,
            },
            1,
        );
        assert_eq!(greedy.node, 1, "the fixture must trap a greedy descent");
        for ef in [Some(2), Some(4), None] {
            let r = h.search(&q, 1, ef);
            assert_eq!(r.len(), 1);
            assert_eq!(r[0].0, 3, "ef {ef:?}: {r:?}");
        }
    }

    #[test]
    fn insert_descends_upper_layers_without_getting_trapped() {
        let mut h = trap();
        // Near T (5°): a greedy descent would start layer 0 at X, whose layer-0
        // component is {X, X2}, and link the new node there only.
        h.insert(5, &at(3.0)).unwrap();
        let slot = h.id_map[&5];
        assert_eq!(
            h.levels[slot as usize], 0,
            "fixture: the new node must be on layer 0 only"
        );
        let links: Vec<u32> = h.neighbours(slot, 0).collect();
        assert!(links.contains(&3), "links of the new node: {links:?}");
        // And it is found from the entry point.
        let r = h.search(&at(2.0), 1, Some(2));
        assert_eq!(r[0].0, 5, "{r:?}");
    }

    #[test]
    fn search_counted_counts_the_comparisons_of_that_search() {
        let h = trap();
        let q = at(0.0);
        let (r, n) = h.search_counted(&q, 2, Some(4));
        assert_eq!(r, h.search(&q, 2, Some(4)));
        // Entry, then layer 1 reaches E, X, Y, T; layer 0 starts from T and X
        // (already scored on layer 1, but each layer scores its own nodes) and
        // reaches X2 and Y: every one of the 5 slots at most once per layer.
        assert!((5..=1 + 4 + 5).contains(&n), "{n}");
        assert_eq!(h.search_counted(&q, 2, Some(4)).1, n);
        let empty = Hnsw::new(2, HnswParams::default());
        assert_eq!(empty.search_counted(&q, 2, None), (Vec::new(), 0));
        // A rejected query compares nothing.
        assert_eq!(h.search_counted(&[f32::NAN, 0.0], 2, None), (Vec::new(), 0));
    }
}
