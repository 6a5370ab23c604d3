mod common;

use std::path::{Path, PathBuf};

use common::*;
use seer_ann::{log_path, AnnError, Hnsw, HnswParams, SaveKind};

const DIM: usize = 32;

fn build(n: usize, seed: u64) -> (Hnsw, Vec<f32>) {
    let data = clustered(n, DIM, 40, 0.8, seed);
    let items: Vec<(u64, &[f32])> = data
        .chunks(DIM)
        .enumerate()
        .map(|(i, v)| (i as u64 * 3, v))
        .collect();
    let mut h = Hnsw::new(DIM, HnswParams::default());
    h.insert_batch(&items).unwrap();
    (h, data)
}

fn results(h: &Hnsw, queries: &[f32]) -> Vec<Vec<(u64, f32)>> {
    queries.chunks(DIM).map(|q| h.search(q, 10, None)).collect()
}

fn queries() -> Vec<f32> {
    clustered(50, DIM, 40, 0.8, 999)
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("index.hnsw");
    (d, p)
}

fn assert_corrupt(r: Result<Hnsw, AnnError>, file: &Path) {
    match r {
        Err(AnnError::Corrupt { path, .. }) | Err(AnnError::Version { path, .. }) => {
            assert_eq!(path, file, "error should name the file")
        }
        Err(AnnError::Io { path, .. }) => assert_eq!(path, file),
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("damaged file loaded without error"),
    }
}

#[test]
fn round_trip_identical_results() {
    let (dir, path) = tmp();
    let (h, _) = build(3000, 1);
    let q = queries();
    assert_eq!(h.save_with_kind(&path).unwrap(), SaveKind::Full);
    let g = Hnsw::load(&path).unwrap();
    assert_eq!(g.len(), h.len());
    assert_eq!(g.dim(), DIM);
    assert_eq!(g.params(), h.params());
    assert_eq!(results(&h, &q), results(&g, &q));
    // Saving again with no change writes nothing.
    assert_eq!(g.save_with_kind(&path).unwrap(), SaveKind::Unchanged);
    // An empty index round-trips too.
    let e = Hnsw::new(7, HnswParams::default());
    let p2 = dir.path().join("empty.hnsw");
    e.save(&p2).unwrap();
    let e2 = Hnsw::load(&p2).unwrap();
    assert!(e2.is_empty() && e2.dim() == 7);
}

#[test]
fn incremental_saves_append_deltas_and_replay() {
    let (_dir, path) = tmp();
    let (mut h, _) = build(3000, 2);
    let q = queries();
    h.save(&path).unwrap();
    let base_len = std::fs::metadata(&path).unwrap().len();

    // Round 1: a few inserts, a replacement and deletes -> delta. (Each insert also
    // rewrites up to 2*m neighbour lists, so "a few" is relative to a 3000-item index.)
    let extra = clustered(10, DIM, 40, 0.8, 3);
    for (i, v) in extra.chunks(DIM).enumerate() {
        h.insert(100_000 + i as u64, v).unwrap();
    }
    h.insert(3, &extra[..DIM]).unwrap();
    for id in [0u64, 6, 9, 300] {
        assert!(h.remove(id));
    }
    assert_eq!(h.save_with_kind(&path).unwrap(), SaveKind::Delta);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        base_len,
        "base untouched by a delta save"
    );
    let log1 = std::fs::metadata(log_path(&path)).unwrap().len();
    assert!(log1 < base_len / 4);
    let g = Hnsw::load(&path).unwrap();
    assert_eq!(results(&h, &q), results(&g, &q));
    assert_eq!(g.len(), h.len());
    assert!(!g.contains(6) && g.contains(100_005));

    // Round 2 on the loaded copy: its saves continue the same log.
    let mut g = g;
    g.remove(100_005);
    g.set_ef_search(33);
    assert_eq!(g.save_with_kind(&path).unwrap(), SaveKind::Delta);
    assert!(std::fs::metadata(log_path(&path)).unwrap().len() > log1);
    let g2 = Hnsw::load(&path).unwrap();
    assert_eq!(g2.params().ef_search, 33);
    assert!(!g2.contains(100_005));
    assert_eq!(results(&g, &q), results(&g2, &q));

    // Consolidation + many changes -> compaction into a fresh base, log removed.
    let mut g2 = g2;
    for id in (0..3000u64).map(|i| i * 3).filter(|i| i % 2 == 0) {
        g2.remove(id);
    }
    g2.consolidate();
    assert_eq!(g2.save_with_kind(&path).unwrap(), SaveKind::Full);
    assert!(!log_path(&path).exists());
    let g3 = Hnsw::load(&path).unwrap();
    assert_eq!(results(&g2, &q), results(&g3, &q));
    assert_eq!(g3.len(), g2.len());
}

#[test]
fn save_to_another_path_is_full_and_independent() {
    let (dir, path) = tmp();
    let (mut h, data) = build(1000, 4);
    h.save(&path).unwrap();
    let other = dir.path().join("copy.hnsw");
    h.insert(77_777, &data[..DIM]).unwrap();
    assert_eq!(h.save_with_kind(&other).unwrap(), SaveKind::Full);
    // Back to the first path: its state is older than the tracked one, so full again.
    h.remove(77_777);
    assert_eq!(h.save_with_kind(&path).unwrap(), SaveKind::Full);
    assert!(Hnsw::load(&other).unwrap().contains(77_777));
    assert!(!Hnsw::load(&path).unwrap().contains(77_777));
}

#[test]
fn external_change_of_the_file_forces_full_save() {
    let (dir, path) = tmp();
    let (mut h, data) = build(1000, 5);
    h.save(&path).unwrap();
    // Someone else replaces the file (e.g. another process saved a different index).
    let (other, _) = build(500, 6);
    other.save(&dir.path().join("x.hnsw")).unwrap();
    std::fs::copy(dir.path().join("x.hnsw"), &path).unwrap();
    h.insert(1, &data[DIM..2 * DIM]).unwrap();
    assert_eq!(h.save_with_kind(&path).unwrap(), SaveKind::Full);
    assert_eq!(Hnsw::load(&path).unwrap().len(), h.len());
}

#[test]
fn damaged_base_files_are_errors_not_panics() {
    let (dir, path) = tmp();
    let (h, _) = build(800, 7);
    h.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.hnsw");

    // Missing file: an I/O error naming it.
    assert!(matches!(
        Hnsw::load(&dir.path().join("nope.hnsw")),
        Err(AnnError::Io { .. })
    ));
    // Empty, garbage, truncated at many points.
    let mut cases: Vec<Vec<u8>> = vec![Vec::new(), b"hello".to_vec(), vec![0u8; 4096]];
    let mut rng = Rng::new(1);
    cases.push((0..100_000).map(|_| rng.next_u64() as u8).collect());
    for cut in [
        1,
        8,
        50,
        95,
        96,
        97,
        1000,
        good.len() / 2,
        good.len() - 5,
        good.len() - 1,
    ] {
        cases.push(good[..cut].to_vec());
    }
    // Extra bytes at the end.
    let mut longer = good.clone();
    longer.extend_from_slice(b"xx");
    cases.push(longer);
    // Single bit flips across the file (header fields, links, vectors, checksum).
    for pos in
        (0..good.len())
            .step_by(good.len() / 97 + 1)
            .chain([10, 20, 45, 60, 90, good.len() - 2])
    {
        let mut c = good.clone();
        c[pos] ^= 0x10;
        cases.push(c);
    }
    for c in cases {
        std::fs::write(&bad, &c).unwrap();
        assert_corrupt(Hnsw::load(&bad), &bad);
    }
    // Future version.
    let mut v = good.clone();
    v[8] = 99;
    std::fs::write(&bad, &v).unwrap();
    assert!(matches!(
        Hnsw::load(&bad),
        Err(AnnError::Version { found: 99, .. })
    ));
}

#[test]
fn damaged_logs() {
    let (_dir, path) = tmp();
    let (mut h, data) = build(800, 8);
    let q = queries();
    h.save(&path).unwrap();
    let r0 = results(&h, &q);
    h.insert(5_000_000, &data[..DIM]).unwrap();
    h.save(&path).unwrap();
    let r1 = results(&h, &q);
    h.remove(5_000_000);
    h.remove(3);
    assert_eq!(h.save_with_kind(&path).unwrap(), SaveKind::Delta);
    let r2 = results(&h, &q);
    let lp = log_path(&path);
    let log = std::fs::read(&lp).unwrap();
    assert_eq!(results(&Hnsw::load(&path).unwrap(), &q), r2);

    // Torn last segment (crash mid-append): the previous save's state loads.
    let g = {
        std::fs::write(&lp, &log[..log.len() - 7]).unwrap();
        Hnsw::load(&path).unwrap()
    };
    assert_eq!(results(&g, &q), r1);
    assert!(g.contains(5_000_000));
    // ... and the next save from that state truncates the torn tail first.
    let mut g = g;
    g.remove(6);
    assert_eq!(g.save_with_kind(&path).unwrap(), SaveKind::Delta);
    let g2 = Hnsw::load(&path).unwrap();
    assert!(!g2.contains(6) && g2.contains(5_000_000));
    assert_eq!(results(&g, &q), results(&g2, &q));

    // Bit flip in the last segment reads as torn too; in an earlier one it is corruption.
    std::fs::write(&lp, &log).unwrap();
    let first_seg_end = {
        let len = u64::from_le_bytes(log[40..48].try_into().unwrap()) as usize;
        32 + 16 + len
    };
    let mut c = log.clone();
    c[first_seg_end + 30] ^= 1;
    std::fs::write(&lp, &c).unwrap();
    assert_eq!(results(&Hnsw::load(&path).unwrap(), &q), r1);
    let mut c = log.clone();
    c[60] ^= 1;
    std::fs::write(&lp, &c).unwrap();
    assert_corrupt(Hnsw::load(&path), &lp);
    // Only a header, or a cut inside the first segment: nothing applied.
    std::fs::write(&lp, &log[..32]).unwrap();
    assert_eq!(results(&Hnsw::load(&path).unwrap(), &q), r0);
    std::fs::write(&lp, &log[..40]).unwrap();
    assert_eq!(results(&Hnsw::load(&path).unwrap(), &q), r0);
    // Garbage instead of a log header.
    std::fs::write(&lp, b"garbage garbage garbage garbage garbage").unwrap();
    assert_corrupt(Hnsw::load(&path), &lp);
    std::fs::write(&lp, b"").unwrap();
    assert_corrupt(Hnsw::load(&path), &lp);
}

#[test]
fn leftover_temp_and_stale_log_do_not_break_load() {
    let (_dir, path) = tmp();
    let (mut h, data) = build(800, 9);
    let q = queries();
    h.save(&path).unwrap();
    h.insert(9_999_999, &data[..DIM]).unwrap();
    h.save(&path).unwrap(); // delta
    let stale_log = std::fs::read(log_path(&path)).unwrap();
    let r1 = results(&h, &q);

    // A crash during a full save leaves a partial temp file (under a random
    // name): ignored by load, and the next save writes a fresh one of its own.
    let tmp_file = path.with_file_name(".index.hnsw.AbC123.tmp");
    std::fs::write(&tmp_file, b"partial write from a crashed save").unwrap();
    let g = Hnsw::load(&path).unwrap();
    assert_eq!(results(&g, &q), r1);

    // A crash after the new base was renamed in but before the old log was removed
    // leaves a log of the previous generation: ignored.
    for i in 0..400u64 {
        h.remove(i * 3);
    }
    h.consolidate();
    assert_eq!(h.save_with_kind(&path).unwrap(), SaveKind::Full);
    let temps: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert_eq!(
        temps,
        std::slice::from_ref(&tmp_file),
        "the save's own temp file renamed into place"
    );
    std::fs::write(log_path(&path), &stale_log).unwrap();
    let g = Hnsw::load(&path).unwrap();
    assert_eq!(results(&g, &q), results(&h, &q));
    assert_eq!(g.len(), h.len());
    // And the next incremental save replaces the stale log rather than appending to it.
    let mut g = g;
    g.insert(123_456_789, &data[DIM..2 * DIM]).unwrap();
    assert_eq!(g.save_with_kind(&path).unwrap(), SaveKind::Delta);
    assert!(Hnsw::load(&path).unwrap().contains(123_456_789));
}

/// Files whose checksums are valid but whose contents are inconsistent (a bug or a
/// crafted file) are still rejected by the structural checks, not trusted.
#[test]
fn valid_checksum_but_inconsistent_graph_is_rejected() {
    let (dir, path) = tmp();
    let (h, _) = build(500, 10);
    h.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let n = 500usize;
    let m0 = 2 * HnswParams::default().m;
    let links0 = 96 + n * 8 + n * 2;
    let reseal = |mut f: Vec<u8>| {
        let end = f.len() - 4;
        let crc = crc32fast::hash(&f[96..end]);
        f[end..].copy_from_slice(&crc.to_le_bytes());
        f
    };
    let bad = dir.path().join("crafted.hnsw");
    let mut cases = Vec::new();
    // A link pointing past the last node.
    let mut c = good.clone();
    c[links0 + 4..links0 + 8].copy_from_slice(&9_999_999u32.to_le_bytes());
    cases.push(c);
    // A link count above the layer's capacity.
    let mut c = good.clone();
    c[links0..links0 + 4].copy_from_slice(&(m0 as u32 + 1).to_le_bytes());
    cases.push(c);
    // An invalid node state.
    let mut c = good.clone();
    c[96 + n * 8] = 7;
    cases.push(c);
    // Two live nodes with the same id.
    let mut c = good.clone();
    let id0: [u8; 8] = c[96..104].try_into().unwrap();
    c[104..112].copy_from_slice(&id0);
    cases.push(c);
    for c in cases {
        std::fs::write(&bad, reseal(c)).unwrap();
        assert_corrupt(Hnsw::load(&bad), &bad);
    }
}
