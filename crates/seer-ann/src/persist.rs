//! On-disk format: a checksummed base snapshot plus an append-only delta log.
//!
//! `index.hnsw` (base) = 96-byte header (magic, version, params, sizes, generation,
//! CRC32 of the header) + payload (ids, states, levels, layer-0 links, upper links,
//! f16 vectors) + CRC32 of the payload. It is only ever replaced whole: written to
//! a temporary `.index.hnsw.<random>.tmp`, fsynced, renamed over, directory fsynced
//! (`seer_util::fs`).
//!
//! `index.hnsw.log` (delta) = 32-byte header naming the base's random `generation`,
//! then segments `[magic u32][crc32 u32][len u64][payload]`. A segment holds the new
//! global state plus the full current record of every slot changed since the previous
//! save (so replay is plain copying, no graph work). Saving after a small change
//! appends one segment and fsyncs: a crash mid-append leaves a torn final segment,
//! which load detects (short or bad CRC) and ignores, i.e. the previous save wins.
//! A log whose generation differs from the base's is stale (left by a crash between
//! a base rename and the log removal) and is ignored. When the log would exceed a
//! quarter of the base, the save writes a fresh base instead (compaction).
//!
//! One writer at a time per path; concurrent saves to the same path from different
//! processes are not supported (the caller holds a lock). Readers in other processes
//! may load while a writer saves: a load that finds the base replaced under it (by
//! the time it has read the log) reads again, so it never pairs a base with the log
//! of another.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use seer_util::fs::{AtomicFile, Durability};

use crate::error::AnnError;
use crate::hnsw::{
    pack_entry, splitmix64, Hnsw, HnswParams, DELETED, DIRTY_VEC, FREE, LIVE, MAX_LEVEL, NO_NODE,
};

const BASE_MAGIC: &[u8; 8] = b"SEERHNSW";
const LOG_MAGIC: &[u8; 8] = b"SEERHLOG";
const SEG_MAGIC: u32 = 0x3147_4553; // "SEG1"
pub(crate) const VERSION: u32 = 1;
const HEADER_LEN: usize = 96;
const LOG_HEADER_LEN: usize = 32;
const SEG_HEADER_LEN: usize = 16;
const MAX_DIM: usize = 1 << 16;
/// Compact (rewrite the base) once the log would exceed base_size / this.
const COMPACT_RATIO: u64 = 4;
const IO_BUF: usize = 1 << 20;

/// What this index last saved to / loaded from, for deciding whether a delta applies.
#[derive(Clone, Debug)]
pub(crate) struct PersistState {
    path: PathBuf,
    generation: u64,
    base_len: u64,
    /// Valid bytes of the log (0 = no log for this generation yet).
    log_len: u64,
}

/// How a save was carried out (for logs and benchmarks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveKind {
    /// The base file was rewritten whole (first save, compaction, or another path).
    Full,
    /// One segment was appended to the delta log.
    Delta,
    /// Nothing changed since the last save to this path.
    Unchanged,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The delta log belonging to the base file `path`.
pub fn log_path(path: &Path) -> PathBuf {
    with_suffix(path, ".log")
}

fn new_generation() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, Ordering::Relaxed);
    splitmix64(t ^ splitmix64(std::process::id() as u64) ^ splitmix64(c.wrapping_add(0xA11CE))) | 1
}

// ---- little-endian helpers ---------------------------------------------------

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
}

/// Buffered writer that checksums everything written through it.
struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
    scratch: Vec<u8>,
}

impl<W: Write> CrcWriter<W> {
    fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: crc32fast::Hasher::new(),
            scratch: Vec::with_capacity(1 << 16),
        }
    }
    fn bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.inner.write_all(b)
    }
    fn flush_scratch(&mut self) -> std::io::Result<()> {
        let s = std::mem::take(&mut self.scratch);
        let r = self.bytes(&s);
        self.scratch = s;
        self.scratch.clear();
        r
    }
    fn u64s(&mut self, it: impl Iterator<Item = u64>) -> std::io::Result<()> {
        for x in it {
            self.scratch.extend_from_slice(&x.to_le_bytes());
            if self.scratch.len() >= 1 << 16 {
                self.flush_scratch()?;
            }
        }
        self.flush_scratch()
    }
    fn u32s(&mut self, it: impl Iterator<Item = u32>) -> std::io::Result<()> {
        for x in it {
            self.scratch.extend_from_slice(&x.to_le_bytes());
            if self.scratch.len() >= 1 << 16 {
                self.flush_scratch()?;
            }
        }
        self.flush_scratch()
    }
    fn u16s(&mut self, s: &[u16]) -> std::io::Result<()> {
        for chunk in s.chunks(1 << 15) {
            for x in chunk {
                self.scratch.extend_from_slice(&x.to_le_bytes());
            }
            self.flush_scratch()?;
        }
        Ok(())
    }
}

/// Buffered reader that checksums everything read through it.
struct CrcReader<R: Read> {
    inner: R,
    crc: crc32fast::Hasher,
    scratch: Vec<u8>,
}

impl<R: Read> CrcReader<R> {
    fn new(inner: R) -> Self {
        CrcReader {
            inner,
            crc: crc32fast::Hasher::new(),
            scratch: vec![0; 1 << 16],
        }
    }
    fn exact(&mut self, b: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(b)?;
        self.crc.update(b);
        Ok(())
    }
    /// Read `n` little-endian words of `W` bytes each, handing each to `f`.
    fn words<const W: usize>(
        &mut self,
        n: usize,
        mut f: impl FnMut([u8; W]),
    ) -> std::io::Result<()> {
        let mut left = n;
        let per = self.scratch.len() / W;
        let mut scratch = std::mem::take(&mut self.scratch);
        while left > 0 {
            let take = left.min(per);
            let buf = &mut scratch[..take * W];
            let r = self.exact(buf);
            if let Err(e) = r {
                self.scratch = scratch;
                return Err(e);
            }
            for c in buf.chunks_exact(W) {
                f(c.try_into().unwrap());
            }
            left -= take;
        }
        self.scratch = scratch;
        Ok(())
    }
}

// ---- sizes -------------------------------------------------------------------

struct Sizes {
    n_slots: usize,
    dim: usize,
    m: usize,
}

impl Sizes {
    fn links0_words(&self) -> Option<usize> {
        self.n_slots.checked_mul(self.m.checked_mul(2)? + 1)
    }
    /// Payload bytes, excluding the upper links.
    fn fixed_payload(&self) -> Option<u64> {
        let ids = self.n_slots.checked_mul(8)?;
        let meta = self.n_slots.checked_mul(2)?;
        let links = self.links0_words()?.checked_mul(4)?;
        let vecs = self.n_slots.checked_mul(self.dim)?.checked_mul(2)?;
        (ids as u64)
            .checked_add(meta as u64)?
            .checked_add(links as u64)?
            .checked_add(vecs as u64)
    }
}

fn upper_words(levels: &[u8], m: usize) -> usize {
    levels.iter().map(|&l| l as usize * (m + 1)).sum()
}

impl Hnsw {
    /// Persist to `path` crash-safely. The first save (or a save to a different path,
    /// or one after large changes) writes a new base file atomically (temp + fsync +
    /// rename); later saves to the same path append only what changed to
    /// `<path>.log`. Either way a crash at any moment leaves the previous or the new
    /// state loadable, never a broken one.
    pub fn save(&self, path: &Path) -> Result<(), AnnError> {
        self.save_with_kind(path).map(|_| ())
    }

    /// Like [`Hnsw::save`], telling whether it wrote a full base or a delta.
    pub fn save_with_kind(&self, path: &Path) -> Result<SaveKind, AnnError> {
        let mut guard = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(st) = guard.as_ref().filter(|st| st.path == path) {
            if let Some(mut st) = self.delta_target(st)? {
                let (records, bytes) = self.dirty_summary();
                if records == 0 && !self.params_dirty.load(Ordering::Relaxed) {
                    return Ok(SaveKind::Unchanged);
                }
                let seg_len = (SEG_HEADER_LEN + bytes) as u64;
                let log_total = st.log_len.max(LOG_HEADER_LEN as u64) + seg_len;
                if log_total <= st.base_len / COMPACT_RATIO {
                    self.append_delta(&mut st)?;
                    self.clear_dirty();
                    *guard = Some(st);
                    return Ok(SaveKind::Delta);
                }
            }
        }
        let st = self.save_full(path)?;
        self.clear_dirty();
        *guard = Some(st);
        Ok(SaveKind::Full)
    }

    /// Persist to `path` as a whole new base file, never a delta: written to a
    /// temporary beside it, fsynced, renamed over whatever is there and the folder
    /// fsynced, then `path`'s log (which names the replaced base) removed. Until the
    /// rename, readers of `path` keep finding the previous file whole; a crash at any
    /// point leaves the previous or the new graph, never a mix. For replacing a graph
    /// with one built afresh.
    pub fn save_whole(&self, path: &Path) -> Result<(), AnnError> {
        let mut guard = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.save_full(path)?;
        self.clear_dirty();
        *guard = Some(st);
        Ok(())
    }

    /// Is the on-disk state at `st.path` still exactly what this index last wrote/read?
    fn delta_target(&self, st: &PersistState) -> Result<Option<PersistState>, AnnError> {
        let Ok(mut f) = File::open(&st.path) else {
            return Ok(None);
        };
        let Ok(meta) = f.metadata() else {
            return Ok(None);
        };
        let mut h = [0u8; HEADER_LEN];
        if meta.len() != st.base_len || f.read_exact(&mut h).is_err() {
            return Ok(None);
        }
        if u64::from_le_bytes(h[40..48].try_into().unwrap()) != st.generation {
            return Ok(None);
        }
        if st.log_len > 0 {
            let lp = log_path(&st.path);
            let Ok(mut lf) = File::open(&lp) else {
                return Ok(None);
            };
            let len = lf.metadata().map(|m| m.len()).unwrap_or(0);
            let mut lh = [0u8; LOG_HEADER_LEN];
            if len < st.log_len || lf.read_exact(&mut lh).is_err() {
                return Ok(None);
            }
            if u64::from_le_bytes(lh[16..24].try_into().unwrap()) != st.generation {
                return Ok(None);
            }
        }
        Ok(Some(st.clone()))
    }

    fn clear_dirty(&self) {
        self.params_dirty.store(false, Ordering::Relaxed);
        for d in &self.dirty {
            d.store(0, Ordering::Relaxed);
        }
    }

    fn record_len(&self, slot: usize, bits: u8) -> usize {
        let mut n = 16 + (self.m0() + 1) * 4 + self.levels[slot] as usize * (self.params.m + 1) * 4;
        if bits & DIRTY_VEC != 0 && self.state[slot] != FREE {
            n += self.dim * 2;
        }
        n
    }

    /// (number of dirty slots, encoded segment payload bytes)
    fn dirty_summary(&self) -> (usize, usize) {
        let mut records = 0;
        let mut bytes = 48;
        for (s, d) in self.dirty.iter().enumerate() {
            let bits = d.load(Ordering::Relaxed);
            if bits != 0 {
                records += 1;
                bytes += self.record_len(s, bits);
            }
        }
        (records, bytes)
    }

    fn encode_segment(&self) -> Vec<u8> {
        let (records, bytes) = self.dirty_summary();
        let mut p = Vec::with_capacity(SEG_HEADER_LEN + bytes);
        p.extend_from_slice(&SEG_MAGIC.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes()); // crc, patched below
        p.extend_from_slice(&(bytes as u64).to_le_bytes());
        p.extend_from_slice(&(self.n_slots() as u64).to_le_bytes());
        p.extend_from_slice(&self.entry.load(Ordering::Acquire).to_le_bytes());
        p.extend_from_slice(&self.insert_counter.to_le_bytes());
        p.extend_from_slice(&(self.params.ef_search as u64).to_le_bytes());
        p.extend_from_slice(&0u64.to_le_bytes()); // reserved
        p.extend_from_slice(&(records as u64).to_le_bytes());
        for (s, d) in self.dirty.iter().enumerate() {
            let bits = d.load(Ordering::Relaxed);
            if bits == 0 {
                continue;
            }
            let with_vec = bits & DIRTY_VEC != 0 && self.state[s] != FREE;
            p.extend_from_slice(&(s as u32).to_le_bytes());
            p.push(with_vec as u8);
            p.push(self.state[s]);
            p.push(self.levels[s]);
            p.push(0);
            p.extend_from_slice(&self.ids[s].to_le_bytes());
            for w in self.link_words(s as u32, 0) {
                p.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            for w in self.upper[s].iter() {
                p.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            if with_vec {
                for x in self.vec(s as u32) {
                    p.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        debug_assert_eq!(p.len(), SEG_HEADER_LEN + bytes);
        let crc = crc32fast::hash(&p[SEG_HEADER_LEN..]);
        p[4..8].copy_from_slice(&crc.to_le_bytes());
        p
    }

    fn append_delta(&self, st: &mut PersistState) -> Result<(), AnnError> {
        let seg = self.encode_segment();
        let lp = log_path(&st.path);
        if st.log_len == 0 {
            // New log: build it under a temp name, then rename into place, so a log
            // file is never seen with a half-written header.
            let mut buf = Vec::with_capacity(LOG_HEADER_LEN + seg.len());
            buf.extend_from_slice(LOG_MAGIC);
            buf.extend_from_slice(&VERSION.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes());
            buf.extend_from_slice(&st.generation.to_le_bytes());
            let crc = crc32fast::hash(&buf[..24]);
            buf.extend_from_slice(&crc.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes());
            buf.extend_from_slice(&seg);
            seer_util::fs::write(&lp, &buf, Durability::Fsync).map_err(|e| AnnError::io(&lp, e))?;
            st.log_len = buf.len() as u64;
        } else {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&lp)
                .map_err(|e| AnnError::io(&lp, e))?;
            // Drop any torn tail left by a crash before appending after it.
            f.set_len(st.log_len)
                .and_then(|_| f.seek(SeekFrom::Start(st.log_len)))
                .and_then(|_| f.write_all(&seg))
                .and_then(|_| f.sync_data())
                .map_err(|e| AnnError::io(&lp, e))?;
            st.log_len += seg.len() as u64;
        }
        Ok(())
    }

    fn save_full(&self, path: &Path) -> Result<PersistState, AnnError> {
        let generation = new_generation();
        let io = |e| AnnError::io(path, e);
        let file = AtomicFile::create(path, Durability::Fsync).map_err(io)?;
        let mut w = BufWriter::with_capacity(IO_BUF, file);

        let sizes = Sizes {
            n_slots: self.n_slots(),
            dim: self.dim,
            m: self.params.m,
        };
        let upper = upper_words(&self.levels, self.params.m);
        let payload_len = sizes.fixed_payload().unwrap() + upper as u64 * 4;

        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(BASE_MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        h.extend_from_slice(&(self.dim as u32).to_le_bytes());
        h.extend_from_slice(&(self.params.m as u32).to_le_bytes());
        h.extend_from_slice(&(self.params.ef_construction as u32).to_le_bytes());
        h.extend_from_slice(&(self.params.ef_search as u32).to_le_bytes());
        h.extend_from_slice(&self.params.seed.to_le_bytes());
        h.extend_from_slice(&generation.to_le_bytes());
        h.extend_from_slice(&(self.n_slots() as u64).to_le_bytes());
        h.extend_from_slice(&self.entry.load(Ordering::Acquire).to_le_bytes());
        h.extend_from_slice(&self.insert_counter.to_le_bytes());
        h.extend_from_slice(&(upper as u64).to_le_bytes());
        h.extend_from_slice(&payload_len.to_le_bytes());
        let hcrc = crc32fast::hash(&h);
        h.extend_from_slice(&hcrc.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(h.len(), HEADER_LEN);
        w.write_all(&h).map_err(io)?;

        let mut cw = CrcWriter::new(w);
        cw.u64s(self.ids.iter().copied()).map_err(io)?;
        cw.bytes(&self.state).map_err(io)?;
        cw.bytes(&self.levels).map_err(io)?;
        cw.u32s(self.links0.iter().map(|a| a.load(Ordering::Relaxed)))
            .map_err(io)?;
        cw.u32s(
            self.upper
                .iter()
                .flat_map(|b| b.iter())
                .map(|a| a.load(Ordering::Relaxed)),
        )
        .map_err(io)?;
        cw.u16s(&self.vectors).map_err(io)?;
        let crc = cw.crc.clone().finalize();
        let mut w = cw.inner;
        w.write_all(&crc.to_le_bytes()).map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.commit().map_err(io)?;
        // The old log (if any) names the old generation, so it is already inert;
        // removing it just reclaims space.
        let lp = log_path(path);
        match std::fs::remove_file(&lp) {
            Ok(()) => seer_util::fs::sync_parent(&lp).map_err(|e| AnnError::io(&lp, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %lp.display(), error = %e, "could not remove stale ANN log")
            }
        }
        Ok(PersistState {
            path: path.to_path_buf(),
            generation,
            base_len: HEADER_LEN as u64 + payload_len + 4,
            log_len: 0,
        })
    }

    /// Load an index saved by [`Hnsw::save`] (base file plus its delta log, if any).
    /// Every size, checksum and link is validated; a damaged file gives
    /// [`AnnError::Corrupt`] naming it, never a panic. A torn last log segment
    /// (crash during a save) is skipped: the state of the save before it is loaded.
    pub fn load(path: &Path) -> Result<Self, AnnError> {
        // Another process may replace the base while this one reads it (a full save
        // renames a new base in, then removes the old base's log): the old base read
        // with its log already gone would be an older state than the one saved. So
        // the base must still be the file that was read once the log has been read.
        let mut tries = 0;
        let (mut idx, generation, base_len, log_len) = loop {
            let Base {
                mut idx,
                generation,
                len: base_len,
                identity,
            } = read_base(path)?;
            #[cfg(test)]
            tests::between_base_and_log();
            let log_len = apply_log(&mut idx, path, generation)?;
            if identity.is_none() || file_identity(&std::fs::metadata(path).ok()) == identity {
                break (idx, generation, base_len, log_len);
            }
            tries += 1;
            if tries == LOAD_TRIES {
                return Err(AnnError::io(
                    path,
                    std::io::Error::other(format!(
                        "replaced {LOAD_TRIES} times while being read; try again"
                    )),
                ));
            }
        };
        validate(&idx).map_err(|r| AnnError::corrupt(path, r))?;
        idx.rebuild_derived();
        *idx.persist.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(PersistState {
            path: path.to_path_buf(),
            generation,
            base_len,
            log_len,
        });
        Ok(idx)
    }
}

/// How many times [`Hnsw::load`] reads a base that keeps being replaced under it.
const LOAD_TRIES: u32 = 8;

/// Which file `meta` describes (device and inode), where the platform says.
fn file_identity(meta: &Option<std::fs::Metadata>) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.as_ref().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// A base file as read.
struct Base {
    idx: Hnsw,
    generation: u64,
    /// The file's length.
    len: u64,
    /// Which file it was (see [`file_identity`]).
    identity: Option<(u64, u64)>,
}

fn read_base(path: &Path) -> Result<Base, AnnError> {
    let io = |e| AnnError::io(path, e);
    let corrupt = |r: String| AnnError::corrupt(path, r);
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let file_len = meta.len();
    let identity = file_identity(&Some(meta));
    if file_len < (HEADER_LEN + 4) as u64 {
        return Err(corrupt(format!(
            "file is too short ({file_len} bytes) to be an index"
        )));
    }
    let mut r = BufReader::with_capacity(IO_BUF, file);
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).map_err(io)?;
    if &h[0..8] != BASE_MAGIC {
        return Err(corrupt("bad magic: not a seer HNSW index file".into()));
    }
    let mut c = Cursor { buf: &h, pos: 8 };
    let version = c.u32().unwrap();
    if version != VERSION {
        return Err(AnnError::Version {
            path: path.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let stored_hcrc = u32::from_le_bytes(h[88..92].try_into().unwrap());
    if crc32fast::hash(&h[..88]) != stored_hcrc {
        return Err(corrupt("header checksum mismatch".into()));
    }
    let header_len = c.u32().unwrap() as usize;
    let dim = c.u32().unwrap() as usize;
    let m = c.u32().unwrap() as usize;
    let ef_construction = c.u32().unwrap() as usize;
    let ef_search = c.u32().unwrap() as usize;
    let seed = c.u64().unwrap();
    let generation = c.u64().unwrap();
    let n_slots = c.u64().unwrap();
    let entry = c.u64().unwrap();
    let insert_counter = c.u64().unwrap();
    let upper = c.u64().unwrap();
    let payload_len = c.u64().unwrap();
    if header_len != HEADER_LEN {
        return Err(corrupt(format!("unexpected header length {header_len}")));
    }
    let params = HnswParams {
        m,
        ef_construction,
        ef_search,
        seed,
    };
    params
        .validate()
        .map_err(|e| corrupt(format!("bad parameters in header: {e}")))?;
    if dim == 0 || dim > MAX_DIM {
        return Err(corrupt(format!("bad dimension {dim}")));
    }
    if n_slots >= NO_NODE as u64 {
        return Err(corrupt(format!("bad node count {n_slots}")));
    }
    let sizes = Sizes {
        n_slots: n_slots as usize,
        dim,
        m,
    };
    let expected = sizes
        .fixed_payload()
        .and_then(|p| p.checked_add(upper.checked_mul(4)?))
        .ok_or_else(|| corrupt("sizes overflow".into()))?;
    if expected != payload_len || (HEADER_LEN as u64 + payload_len + 4) != file_len {
        return Err(corrupt(format!(
            "size mismatch: header describes {} bytes, file has {file_len} (truncated or damaged)",
            HEADER_LEN as u64 + expected + 4
        )));
    }
    let n = n_slots as usize;
    let mut idx = Hnsw::empty(dim, params);
    let mut cr = CrcReader::new(r);
    let rd = |e: std::io::Error| AnnError::io(path, e);
    idx.ids.reserve_exact(n);
    cr.words::<8>(n, |b| idx.ids.push(u64::from_le_bytes(b)))
        .map_err(rd)?;
    idx.state = vec![0; n];
    cr.exact(&mut idx.state).map_err(rd)?;
    idx.levels = vec![0; n];
    cr.exact(&mut idx.levels).map_err(rd)?;
    if let Some(s) = idx.levels.iter().position(|&l| l as usize > MAX_LEVEL) {
        return Err(corrupt(format!(
            "node {s} has level {} > {MAX_LEVEL}",
            idx.levels[s]
        )));
    }
    if upper_words(&idx.levels, m) as u64 != upper {
        return Err(corrupt(
            "upper-layer link count does not match node levels".into(),
        ));
    }
    let l0 = sizes.links0_words().unwrap();
    idx.links0.reserve_exact(l0);
    cr.words::<4>(l0, |b| {
        idx.links0.push(AtomicU32::new(u32::from_le_bytes(b)))
    })
    .map_err(rd)?;
    idx.upper.reserve_exact(n);
    for s in 0..n {
        let words = idx.levels[s] as usize * (m + 1);
        let mut v = Vec::with_capacity(words);
        cr.words::<4>(words, |b| v.push(AtomicU32::new(u32::from_le_bytes(b))))
            .map_err(rd)?;
        idx.upper.push(v.into_boxed_slice());
    }
    idx.vectors.reserve_exact(n * dim);
    cr.words::<2>(n * dim, |b| idx.vectors.push(u16::from_le_bytes(b)))
        .map_err(rd)?;
    let computed = cr.crc.clone().finalize();
    let mut tail = [0u8; 4];
    cr.inner.read_exact(&mut tail).map_err(rd)?;
    if u32::from_le_bytes(tail) != computed {
        return Err(corrupt("payload checksum mismatch (file damaged)".into()));
    }
    idx.dirty = (0..n).map(|_| AtomicU8::new(0)).collect();
    idx.entry.store(entry, Ordering::Relaxed);
    idx.insert_counter = insert_counter;
    Ok(Base {
        idx,
        generation,
        len: file_len,
        identity,
    })
}

/// Apply the delta log for `path` (if any); returns its valid length (0 if none applies).
fn apply_log(idx: &mut Hnsw, path: &Path, generation: u64) -> Result<u64, AnnError> {
    let lp = log_path(path);
    let data = match std::fs::read(&lp) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(AnnError::io(&lp, e)),
    };
    let corrupt = |r: String| AnnError::corrupt(&lp, r);
    if data.len() < LOG_HEADER_LEN || &data[0..8] != LOG_MAGIC {
        return Err(corrupt("bad log header (not a seer HNSW log)".into()));
    }
    if crc32fast::hash(&data[..24]) != u32::from_le_bytes(data[24..28].try_into().unwrap()) {
        return Err(corrupt("log header checksum mismatch".into()));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(AnnError::Version {
            path: lp,
            found: version,
            supported: VERSION,
        });
    }
    if u64::from_le_bytes(data[16..24].try_into().unwrap()) != generation {
        tracing::warn!(path = %lp.display(), "ignoring stale ANN delta log from an older base");
        return Ok(0);
    }
    let mut pos = LOG_HEADER_LEN;
    while pos < data.len() {
        let torn = |what: &str| {
            tracing::warn!(path = %lp.display(), offset = pos, "ignoring torn final log segment ({what}); an interrupted save");
        };
        let Some(h) = data.get(pos..pos + SEG_HEADER_LEN) else {
            torn("short header");
            break;
        };
        let magic = u32::from_le_bytes(h[0..4].try_into().unwrap());
        let crc = u32::from_le_bytes(h[4..8].try_into().unwrap());
        let len = u64::from_le_bytes(h[8..16].try_into().unwrap());
        let end = (pos + SEG_HEADER_LEN) as u64 + len;
        if end > data.len() as u64 {
            torn("short payload");
            break;
        }
        let end = end as usize;
        let payload = &data[pos + SEG_HEADER_LEN..end];
        if magic != SEG_MAGIC || crc32fast::hash(payload) != crc {
            if end == data.len() {
                torn("checksum");
                break;
            }
            return Err(corrupt(format!("log segment at offset {pos} is damaged")));
        }
        apply_segment(idx, payload)
            .map_err(|r| corrupt(format!("log segment at offset {pos}: {r}")))?;
        pos = end;
    }
    Ok(pos as u64)
}

fn apply_segment(idx: &mut Hnsw, payload: &[u8]) -> Result<(), String> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let short = || "truncated record".to_string();
    let n_slots = c.u64().ok_or_else(short)?;
    let entry = c.u64().ok_or_else(short)?;
    let insert_counter = c.u64().ok_or_else(short)?;
    let ef_search = c.u64().ok_or_else(short)?;
    let _reserved = c.u64().ok_or_else(short)?;
    let records = c.u64().ok_or_else(short)?;
    if n_slots < idx.n_slots() as u64 || n_slots >= NO_NODE as u64 {
        return Err(format!("bad node count {n_slots}"));
    }
    // Each record is at least 16 bytes, so a bogus count cannot make us allocate much.
    if records > payload.len() as u64 / 16 {
        return Err("record count exceeds segment size".into());
    }
    let (dim, m) = (idx.dim, idx.params.m);
    let w0 = 2 * m + 1;
    let grow = n_slots as usize - idx.n_slots();
    // Every new slot comes with a record, which bounds what a bad count can allocate.
    if grow as u64 > records {
        return Err("node count grows more than the segment describes".into());
    }
    idx.vectors.resize(n_slots as usize * dim, 0);
    idx.ids.resize(n_slots as usize, 0);
    idx.state.resize(n_slots as usize, FREE);
    idx.levels.resize(n_slots as usize, 0);
    idx.links0.extend((0..grow * w0).map(|_| AtomicU32::new(0)));
    idx.upper
        .extend((0..grow).map(|_| Box::<[AtomicU32]>::default()));
    idx.dirty.extend((0..grow).map(|_| AtomicU8::new(0)));
    for _ in 0..records {
        let slot = c.u32().ok_or_else(short)? as usize;
        let with_vec = c.u8().ok_or_else(short)?;
        let state = c.u8().ok_or_else(short)?;
        let level = c.u8().ok_or_else(short)?;
        let _pad = c.u8().ok_or_else(short)?;
        let id = c.u64().ok_or_else(short)?;
        if slot >= n_slots as usize {
            return Err(format!(
                "record for slot {slot} beyond node count {n_slots}"
            ));
        }
        if state > DELETED || level as usize > MAX_LEVEL || with_vec > 1 {
            return Err(format!("bad record header for slot {slot}"));
        }
        let l0 = c.take(w0 * 4).ok_or_else(short)?;
        for (a, b) in idx.links0[slot * w0..(slot + 1) * w0]
            .iter()
            .zip(l0.chunks_exact(4))
        {
            a.store(u32::from_le_bytes(b.try_into().unwrap()), Ordering::Relaxed);
        }
        let up = c.take(level as usize * (m + 1) * 4).ok_or_else(short)?;
        idx.upper[slot] = up
            .chunks_exact(4)
            .map(|b| AtomicU32::new(u32::from_le_bytes(b.try_into().unwrap())))
            .collect();
        if with_vec == 1 {
            let v = c.take(dim * 2).ok_or_else(short)?;
            for (d, b) in idx.vectors[slot * dim..(slot + 1) * dim]
                .iter_mut()
                .zip(v.chunks_exact(2))
            {
                *d = u16::from_le_bytes([b[0], b[1]]);
            }
        }
        idx.ids[slot] = id;
        idx.state[slot] = state;
        idx.levels[slot] = level;
    }
    if c.pos != payload.len() {
        return Err("trailing bytes after last record".into());
    }
    idx.entry.store(entry, Ordering::Relaxed);
    idx.insert_counter = insert_counter;
    idx.params.ef_search = (ef_search as usize).clamp(1, 1 << 20);
    Ok(())
}

/// Structural checks that make every later array access in-bounds.
fn validate(idx: &Hnsw) -> Result<(), String> {
    let n = idx.n_slots();
    let m = idx.params.m;
    let w0 = 2 * m + 1;
    if idx.vectors.len() != n * idx.dim
        || idx.state.len() != n
        || idx.levels.len() != n
        || idx.links0.len() != n * w0
        || idx.upper.len() != n
    {
        return Err("inconsistent array sizes".into());
    }
    let mut max_level = 0usize;
    let mut occupied = 0usize;
    for s in 0..n {
        let (state, level) = (idx.state[s], idx.levels[s] as usize);
        if state > DELETED {
            return Err(format!("node {s} has invalid state {state}"));
        }
        if level > MAX_LEVEL || idx.upper[s].len() != level * (m + 1) {
            return Err(format!("node {s} has inconsistent level {level}"));
        }
        if state == FREE {
            if level != 0 || idx.links0[s * w0].load(Ordering::Relaxed) != 0 {
                return Err(format!("free slot {s} has links"));
            }
            continue;
        }
        occupied += 1;
        max_level = max_level.max(level);
        for layer in 0..=level {
            let words = idx.link_words(s as u32, layer);
            let cnt = words[0].load(Ordering::Relaxed) as usize;
            if cnt > idx.cap(layer) {
                return Err(format!("node {s} has {cnt} links on layer {layer}"));
            }
            for a in &words[1..=cnt] {
                let t = a.load(Ordering::Relaxed) as usize;
                if t >= n || idx.state[t] == FREE || (idx.levels[t] as usize) < layer {
                    return Err(format!(
                        "node {s} has an invalid link to {t} on layer {layer}"
                    ));
                }
            }
        }
    }
    let e = idx.entry.load(Ordering::Relaxed);
    let (ep, el) = (e as u32, (e >> 32) as usize);
    if occupied == 0 {
        if ep != NO_NODE {
            idx.entry.store(pack_entry(NO_NODE, 0), Ordering::Relaxed);
        }
    } else if ep as usize >= n
        || idx.state[ep as usize] == FREE
        || idx.levels[ep as usize] as usize != el
        || el != max_level
    {
        return Err("invalid entry point".into());
    }
    let mut seen = std::collections::HashSet::with_capacity(occupied);
    for s in 0..n {
        if idx.state[s] == LIVE && !seen.insert(idx.ids[s]) {
            return Err(format!("id {} appears twice", idx.ids[s]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    thread_local! {
        /// What a test has happen between a load's reading of the base and of
        /// its log (another process's save, say); run once.
        static BETWEEN: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
    }

    pub(super) fn between_base_and_log() {
        if let Some(f) = BETWEEN.with(|b| b.borrow_mut().take()) {
            f()
        }
    }

    const DIM: usize = 8;

    fn vector(id: u64) -> Vec<f32> {
        let v: Vec<f32> = (0..DIM)
            .map(|d| ((id * 31 + d as u64 * 17) % 23) as f32 - 11.0)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn graph(ids: impl Iterator<Item = u64>) -> Hnsw {
        let mut h = Hnsw::new(DIM, HnswParams::default());
        for id in ids {
            h.insert(id, &vector(id)).unwrap();
        }
        h
    }

    fn ids(h: &Hnsw) -> HashSet<u64> {
        h.ids().collect()
    }

    /// A full save by another process renames a new base in and removes the
    /// old base's log: a load that had read the old base found no log and
    /// gave the old base without its deltas, a state never saved.
    #[test]
    fn a_base_replaced_while_loading_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.hnsw");
        let mut old = graph(0..200);
        assert_eq!(old.save_with_kind(&path).unwrap(), SaveKind::Full);
        old.insert(1000, &vector(1000)).unwrap();
        assert_eq!(old.save_with_kind(&path).unwrap(), SaveKind::Delta);
        assert!(log_path(&path).is_file());

        let new = graph(500..700);
        let (into, expected) = (path.clone(), ids(&new));
        BETWEEN.with(|b| {
            *b.borrow_mut() = Some(Box::new(move || new.save_whole(&into).unwrap()));
        });
        let loaded = Hnsw::load(&path).unwrap();
        assert_eq!(ids(&loaded), expected);
        assert!(!log_path(&path).exists());
    }

    /// `save_whole` writes a whole base even where a delta would do, and a
    /// failed one leaves the previous graph and its log as they were.
    #[test]
    fn save_whole_replaces_or_leaves_the_previous_graph_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.hnsw");
        let mut old = graph(0..100);
        old.save(&path).unwrap();
        old.insert(1000, &vector(1000)).unwrap();
        assert_eq!(old.save_with_kind(&path).unwrap(), SaveKind::Delta);
        let before = (
            std::fs::read(&path).unwrap(),
            std::fs::read(log_path(&path)).unwrap(),
        );

        // The temporary cannot be created in a read-only folder (where the
        // permission holds: not for root), so the save fails...
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let ro = std::fs::Permissions::from_mode(0o555);
            std::fs::set_permissions(dir.path(), ro).unwrap();
            let probe = dir.path().join("probe");
            let writable = std::fs::write(&probe, b"").is_ok();
            let _ = std::fs::remove_file(&probe);
            if !writable {
                let fresh = graph(500..600);
                assert!(fresh.save_whole(&path).is_err());
            }
            let rw = std::fs::Permissions::from_mode(0o755);
            std::fs::set_permissions(dir.path(), rw).unwrap();
            // ...and what was there is untouched, and loads as before.
            let after = (
                std::fs::read(&path).unwrap(),
                std::fs::read(log_path(&path)).unwrap(),
            );
            assert!(after == before);
            assert_eq!(ids(&Hnsw::load(&path).unwrap()), ids(&old));
        }

        let mut fresh = graph(500..600);
        fresh.save_whole(&path).unwrap();
        assert!(!log_path(&path).exists());
        assert_eq!(ids(&Hnsw::load(&path).unwrap()), ids(&fresh));
        // A small change after it goes to a log again.
        fresh.insert(2000, &vector(2000)).unwrap();
        assert_eq!(fresh.save_with_kind(&path).unwrap(), SaveKind::Delta);
        assert_eq!(ids(&Hnsw::load(&path).unwrap()), ids(&fresh));
    }
}
