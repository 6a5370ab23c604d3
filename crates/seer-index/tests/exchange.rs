//! Import and export of the clip-retrieval layout through the library: vectors
//! stored at unit length, all-or-nothing imports, exports that leave no stale
//! shard behind, and plain errors.

use std::path::{Path, PathBuf};

use seer_index::exchange::{self, layout_files};
use seer_index::npy::{self, Dtype};
use seer_index::search::rank_exact_where;
use seer_index::{Encoding, ModelInfo, SearchOptions, Store};

const MODEL: &str = "test-model";
/// Large enough that no approximate index is built (exact ranking only).
const NO_ANN: usize = usize::MAX;

/// Writes shard `number` of the layout into `dir`: `rows` as f32 embeddings and
/// `paths` as the `image_path` column.
fn write_shard(dir: &Path, number: usize, rows: &[Vec<f32>], paths: &[&str]) {
    let dim = rows.first().map_or(4, Vec::len);
    let meta: Vec<exchange::ShardRow> = paths
        .iter()
        .map(|p| exchange::ShardRow {
            key: p.to_string(),
            image_path: p.to_string(),
            caption: None,
        })
        .collect();
    exchange::write_shard(dir, number, &meta, rows, dim, Dtype::F32, &[]).unwrap();
}

/// Replaces shard `number`'s metadata in `dir` with one naming only `paths`.
fn replace_metadata(dir: &Path, number: usize, paths: &[&str]) {
    let other = tempfile::tempdir().unwrap();
    write_shard(other.path(), 0, &vec![vec![1.0; 4]; paths.len()], paths);
    std::fs::copy(
        other.path().join("metadata/metadata_0.parquet"),
        dir.join(format!("metadata/metadata_{number}.parquet")),
    )
    .unwrap();
}

fn import(
    store: &mut Store,
    dir: &Path,
    dim: usize,
) -> seer_index::Result<exchange::ExchangeSummary> {
    exchange::import(store, MODEL, dim, dir, Encoding::F32, NO_ANN)
}

fn model(store: &Store) -> ModelInfo {
    store
        .models()
        .unwrap()
        .into_iter()
        .find(|m| m.name == MODEL)
        .expect("the model is in the index")
}

/// A model's name and its (path, vector) pairs.
type ModelVectors = (String, Vec<(String, Vec<f32>)>);

/// Everything an import may change: files, generation, and each model's
/// (path, vector) pairs.
fn snapshot(store: &Store) -> (usize, u64, Vec<ModelVectors>) {
    let models = store
        .models()
        .unwrap()
        .into_iter()
        .map(|m| {
            let v = store.load_vectors(&m).unwrap();
            let rows = (0..v.len())
                .map(|i| (v.paths[i].clone(), v.row(i).to_vec()))
                .collect();
            (m.name, rows)
        })
        .collect();
    (
        store.file_count().unwrap(),
        store.generation().unwrap(),
        models,
    )
}

/// 4-d vectors far from unit length: `a` and `b` point almost the same way.
fn raw_rows() -> Vec<Vec<f32>> {
    vec![
        vec![3.0, 4.0, 0.0, 0.0],
        vec![4.0, 3.0, 0.0, 0.0],
        vec![0.0, 0.0, 50.0, 120.0],
    ]
}

#[test]
fn raw_vectors_are_stored_at_unit_length_and_rank_by_cosine() {
    let src = tempfile::tempdir().unwrap();
    write_shard(
        src.path(),
        0,
        &raw_rows(),
        &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"],
    );
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let s = import(&mut store, src.path(), 4).unwrap();
    assert_eq!((s.rows, s.shards, s.dim), (3, 1, 4));

    let vectors = store.load_vectors(&model(&store)).unwrap();
    for i in 0..vectors.len() {
        let norm = vectors.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "row {i} has norm {norm}");
    }
    // The stored a itself scores 1, b its cosine with a (24/25), c 0.
    let a = store
        .vector_of("/p/a.jpg", &model(&store))
        .unwrap()
        .unwrap();
    let options = SearchOptions {
        k: 3,
        ..Default::default()
    };
    let hits = rank_exact_where(&vectors, &a, &options, None).unwrap();
    let scores: Vec<(&str, f32)> = hits.iter().map(|h| (h.path.as_str(), h.score)).collect();
    assert_eq!(scores[0].0, "/p/a.jpg", "{scores:?}");
    assert!((scores[0].1 - 1.0).abs() < 1e-5, "{scores:?}");
    assert_eq!(scores[1].0, "/p/b.jpg", "{scores:?}");
    assert!((scores[1].1 - 0.96).abs() < 1e-4, "{scores:?}");
    assert!(scores[2].1.abs() < 1e-5, "{scores:?}");
}

#[test]
fn zero_and_non_finite_rows_are_refused_by_file_and_row() {
    for (bad, why) in [
        (vec![0.0; 4], "is all zeros"),
        (vec![1.0, f32::NAN, 0.0, 0.0], "non-finite"),
        (vec![f32::INFINITY, 0.0, 0.0, 0.0], "non-finite"),
    ] {
        let src = tempfile::tempdir().unwrap();
        let mut rows = raw_rows();
        rows[2] = bad;
        write_shard(src.path(), 0, &rows, &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"]);
        let idx = tempfile::tempdir().unwrap();
        let mut store = Store::open(idx.path()).unwrap();
        let err = import(&mut store, src.path(), 4).unwrap_err().to_string();
        assert!(
            err.contains("img_emb_0.npy") && err.contains("row 2") && err.contains(why),
            "{err}"
        );
        assert!(store.models().unwrap().is_empty(), "nothing stored: {err}");
        assert_eq!(store.file_count().unwrap(), 0);
    }
}

/// An index holding one earlier import, of paths `/p/a.jpg`..`/p/c.jpg`.
fn index_with_one_import() -> (tempfile::TempDir, Store) {
    let src = tempfile::tempdir().unwrap();
    write_shard(
        src.path(),
        0,
        &raw_rows(),
        &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"],
    );
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    import(&mut store, src.path(), 4).unwrap();
    (idx, store)
}

/// A folder whose shard 0 is good (new vectors for the indexed paths, and a
/// new path) and whose shard 1 is damaged by `damage`.
fn folder_with_bad_second_shard(damage: &str) -> tempfile::TempDir {
    let src = tempfile::tempdir().unwrap();
    let good = vec![vec![1.0, 0.0, 0.0, 0.0]; 4];
    write_shard(
        src.path(),
        0,
        &good,
        &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg", "/p/new.jpg"],
    );
    let paths = ["/p/d.jpg", "/p/e.jpg"];
    match damage {
        "size" => write_shard(src.path(), 1, &[vec![1.0; 8], vec![2.0; 8]], &paths),
        "nan" => write_shard(src.path(), 1, &[vec![1.0; 4], vec![f32::NAN; 4]], &paths),
        "zero" => write_shard(src.path(), 1, &[vec![1.0; 4], vec![0.0; 4]], &paths),
        "count" => {
            let three = [vec![1.0; 4], vec![2.0; 4], vec![3.0; 4]];
            write_shard(src.path(), 1, &three, &["/p/d.jpg", "/p/e.jpg", "/p/f.jpg"]);
            replace_metadata(src.path(), 1, &paths);
        }
        "int" => {
            write_shard(src.path(), 1, &[vec![1.0; 4], vec![2.0; 4]], &paths);
            std::fs::write(src.path().join("img_emb/img_emb_1.npy"), int_npy(2, 4)).unwrap();
        }
        other => unreachable!("{other}"),
    }
    src
}

/// A shard whose metadata cannot be put in place leaves no array behind: an
/// array without its metadata would refuse the rerun of an export (as an
/// earlier export's) or read as a shard without paths.
#[test]
fn a_shard_whose_metadata_cannot_be_written_leaves_no_array() {
    let out = tempfile::tempdir().unwrap();
    // A folder where the metadata file goes: putting it in place fails.
    std::fs::create_dir_all(out.path().join("metadata/metadata_0.parquet/taken")).unwrap();
    let row = exchange::ShardRow {
        key: "a".into(),
        image_path: "/p/a.jpg".into(),
        caption: None,
    };
    let err = exchange::write_shard(out.path(), 0, &[row], &[vec![1.0; 4]], 4, Dtype::F32, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("metadata_0.parquet"), "{err}");
    let arrays: Vec<_> = std::fs::read_dir(out.path().join("img_emb"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(arrays.is_empty(), "left behind: {arrays:?}");
}

#[test]
fn a_refused_later_shard_leaves_the_index_exactly_as_before() {
    for (damage, said) in [
        ("size", "8-d"),
        ("nan", "row 1 holds non-finite values"),
        ("zero", "row 1 is all zeros"),
        ("count", "2 paths but 3 embeddings"),
        ("int", "unsupported dtype '<i4'"),
    ] {
        let (_idx, mut store) = index_with_one_import();
        let before = snapshot(&store);
        let src = folder_with_bad_second_shard(damage);
        let err = import(&mut store, src.path(), 4).unwrap_err().to_string();
        assert!(err.contains(said), "{damage}: {err}");
        assert!(err.contains("_1."), "{damage}: names shard 1: {err}");
        assert_eq!(snapshot(&store), before, "{damage}: the index changed");
        // The lock was let go: a good import goes through after.
        let again = tempfile::tempdir().unwrap();
        write_shard(
            again.path(),
            0,
            &raw_rows(),
            &["/p/x.jpg", "/p/y.jpg", "/p/z.jpg"],
        );
        assert_eq!(import(&mut store, again.path(), 4).unwrap().rows, 3);
    }

    // Into an empty index, a refused import leaves no model behind.
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let src = folder_with_bad_second_shard("size");
    assert!(import(&mut store, src.path(), 4).is_err());
    assert!(store.models().unwrap().is_empty());
    assert_eq!(store.file_count().unwrap(), 0);
}

/// A 2-d little-endian int32 `.npy` of zeros: not embeddings.
fn int_npy(rows: usize, cols: usize) -> Vec<u8> {
    let mut bytes = npy::header(&[rows, cols], Dtype::F32, 0);
    let at = bytes.windows(5).position(|w| w == b"'<f4'").unwrap();
    bytes[at..at + 5].copy_from_slice(b"'<i4'");
    bytes.extend(vec![0u8; rows * cols * 4]);
    bytes
}

#[test]
fn an_integer_npy_is_refused_naming_its_dtype_plainly() {
    let src = tempfile::tempdir().unwrap();
    write_shard(
        src.path(),
        0,
        &raw_rows(),
        &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"],
    );
    let npy_path = src.path().join("img_emb/img_emb_0.npy");
    std::fs::write(&npy_path, int_npy(3, 4)).unwrap();
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let err = import(&mut store, src.path(), 4).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: unsupported dtype '<i4' (expected a float: f2, f4 or f8)",
            npy_path.display()
        )
    );
}

/// Every shard's headers are checked before any row is stored: with a bad
/// value in shard 0 (found only while its rows are read) and a header that
/// does not fit in shard 1, the error is shard 1's.
#[test]
fn every_header_is_checked_before_the_first_row_is_read() {
    let src = tempfile::tempdir().unwrap();
    let mut rows = raw_rows();
    rows[2] = vec![f32::NAN; 4];
    write_shard(src.path(), 0, &rows, &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"]);
    write_shard(src.path(), 1, &[vec![1.0; 8]], &["/p/d.jpg"]);
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let err = import(&mut store, src.path(), 4).unwrap_err().to_string();
    assert!(
        err.contains("img_emb_1.npy") && err.contains("8-d"),
        "{err}"
    );
    assert!(store.models().unwrap().is_empty(), "nothing stored: {err}");
}

fn names(paths: &[PathBuf], root: &Path) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect()
}

#[test]
fn export_refuses_a_folder_with_stale_shards_and_overwrite_replaces_only_them() {
    let (idx, _) = index_with_one_import();
    let store = Store::open_read_only(idx.path()).unwrap();
    let m = model(&store);

    // An earlier, larger export: shards 0 and 1, errors, an empty marker,
    // and a file of the user's own.
    let out = tempfile::tempdir().unwrap();
    write_shard(out.path(), 0, &raw_rows(), &["/q/1", "/q/2", "/q/3"]);
    write_shard(out.path(), 1, &raw_rows(), &["/q/4", "/q/5", "/q/6"]);
    std::fs::write(out.path().join("errors/empty_2"), b"").unwrap();
    std::fs::write(out.path().join("img_emb/notes.txt"), b"mine").unwrap();
    let before = layout_files(out.path()).unwrap();
    assert_eq!(before.len(), 7, "{before:?}");

    let err = exchange::export(&store, &m, out.path(), Dtype::F32, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&out.path().display().to_string())
            && err.contains("img_emb/img_emb_0.npy")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(layout_files(out.path()).unwrap(), before, "nothing touched");

    let s = exchange::export(&store, &m, out.path(), Dtype::F32, true).unwrap();
    assert_eq!(s.rows, 3);
    assert_eq!(
        names(&layout_files(out.path()).unwrap(), out.path()),
        ["img_emb/img_emb_0.npy", "metadata/metadata_0.parquet"]
    );
    assert_eq!(
        std::fs::read(out.path().join("img_emb/notes.txt")).unwrap(),
        b"mine"
    );

    // An import of the folder holds exactly the index's vectors.
    let idx2 = tempfile::tempdir().unwrap();
    let mut store2 = Store::open(idx2.path()).unwrap();
    assert_eq!(import(&mut store2, out.path(), 4).unwrap().rows, 3);
    let (theirs, ours) = (snapshot(&store2).2, snapshot(&store).2);
    assert_eq!(theirs.len(), 1);
    let (theirs, ours) = (&theirs[0].1, &ours[0].1);
    assert_eq!(
        theirs.iter().map(|r| &r.0).collect::<Vec<_>>(),
        ours.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((path, a), (_, b)) in theirs.iter().zip(ours) {
        let close = a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close, "{path}: {a:?} vs {b:?}");
    }

    // An empty or missing folder needs no flag.
    let fresh = tempfile::tempdir().unwrap();
    exchange::export(&store, &m, &fresh.path().join("new"), Dtype::F32, false).unwrap();
}

#[test]
fn zero_dimensional_vectors_are_an_error_not_a_panic() {
    let src = tempfile::tempdir().unwrap();
    write_shard(src.path(), 0, &[vec![], vec![]], &["/p/a.jpg", "/p/b.jpg"]);
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let err = import(&mut store, src.path(), 0).unwrap_err().to_string();
    assert!(err.contains("0-d"), "{err}");
    assert!(store.models().unwrap().is_empty());
}

/// Shard files are named as the layout writes them: `img_emb_01.npy` beside
/// `img_emb_1.npy` is not shard 1 a second time (nor is it exported over).
#[test]
fn only_canonically_numbered_shards_are_read() {
    let src = tempfile::tempdir().unwrap();
    write_shard(
        src.path(),
        0,
        &raw_rows(),
        &["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"],
    );
    write_shard(src.path(), 1, &raw_rows()[..1], &["/p/d.jpg"]);
    for odd in ["01", "+1"] {
        std::fs::copy(
            src.path().join("img_emb/img_emb_1.npy"),
            src.path().join(format!("img_emb/img_emb_{odd}.npy")),
        )
        .unwrap();
    }
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    let s = import(&mut store, src.path(), 4).unwrap();
    assert_eq!((s.rows, s.shards), (4, 2));
    let files: Vec<String> = exchange::layout_files(src.path())
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        !files.iter().any(|f| f.contains("_01") || f.contains("_+1")),
        "{files:?}"
    );
}

/// `rows` 4-d vectors, all different and none of them zero.
fn many_rows(rows: usize) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|r| (0..4).map(|c| ((r * 4 + c) % 13) as f32 - 5.5).collect())
        .collect()
}

/// Bytes of 3 rows of 4 f32 values: a chunk size that splits a shard.
const THREE_ROWS: usize = 3 * 4 * 4;

#[test]
fn a_shard_larger_than_a_chunk_is_read_in_chunks_with_the_values_decode_gives() {
    let src = tempfile::tempdir().unwrap();
    let rows = many_rows(50);
    let paths: Vec<String> = (0..50).map(|i| format!("/p/{i:02}.jpg")).collect();
    let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    write_shard(src.path(), 0, &rows[..20], &path_refs[..20]);
    write_shard(src.path(), 1, &rows[20..], &path_refs[20..]);
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    // 17 chunks: 7 of shard 0 (the last of 2 rows), 10 of shard 1.
    let s = exchange::import_in_chunks(
        &mut store,
        MODEL,
        4,
        src.path(),
        Encoding::F32,
        NO_ANN,
        THREE_ROWS,
    )
    .unwrap();
    assert_eq!((s.rows, s.shards, s.dim), (50, 2, 4));

    // Each stored vector is decode's row, at unit length, under its own path.
    let mut decoded = Vec::new();
    for shard in 0..2 {
        let npy_path = src.path().join(format!("img_emb/img_emb_{shard}.npy"));
        let (n, dim, values) = npy::decode(&std::fs::read(npy_path).unwrap()).unwrap();
        assert_eq!((n, dim), ([20, 30][shard], 4));
        decoded.extend(values.chunks_exact(4).map(<[f32]>::to_vec));
    }
    assert_eq!(decoded, rows);
    let stored = &snapshot(&store).2[0].1;
    let mut expected: Vec<(String, Vec<f32>)> = paths.iter().cloned().zip(decoded).collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let mut stored = stored.clone();
    stored.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(stored.len(), 50);
    for ((path, got), (want_path, raw)) in stored.iter().zip(&expected) {
        assert_eq!(path, want_path);
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        let close = got
            .iter()
            .zip(raw)
            .all(|(g, r)| (g - r / norm).abs() < 1e-6);
        assert!(close, "{path}: {got:?} vs {raw:?} / {norm}");
    }

    // The default chunk gives the same index.
    let idx2 = tempfile::tempdir().unwrap();
    let mut store2 = Store::open(idx2.path()).unwrap();
    import(&mut store2, src.path(), 4).unwrap();
    assert_eq!(snapshot(&store2).2, snapshot(&store).2);
}

/// A folder whose shard 0 is good and whose shard 1, of 40 rows (14 chunks of
/// [`THREE_ROWS`]), is cut off in the middle of its row 21.
fn folder_with_second_shard_cut_in_the_middle() -> (tempfile::TempDir, PathBuf) {
    let src = tempfile::tempdir().unwrap();
    write_shard(
        src.path(),
        0,
        &raw_rows(),
        &["/p/a.jpg", "/p/new.jpg", "/p/c.jpg"],
    );
    let paths: Vec<String> = (0..40).map(|i| format!("/q/{i}.jpg")).collect();
    let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    write_shard(src.path(), 1, &many_rows(40), &path_refs);
    let npy_path = src.path().join("img_emb/img_emb_1.npy");
    let bytes = std::fs::read(&npy_path).unwrap();
    let data_start = bytes.len() - 40 * 16;
    std::fs::write(&npy_path, &bytes[..data_start + 21 * 16 + 5]).unwrap();
    (src, npy_path)
}

#[test]
fn a_shard_cut_in_the_middle_is_refused_by_name_and_cause_and_rolled_back() {
    let (src, npy_path) = folder_with_second_shard_cut_in_the_middle();
    let said = format!(
        "{}: expected 640 bytes of data for shape (40, 4), found {}",
        npy_path.display(),
        21 * 16 + 5
    );
    let refused = |store: &mut Store, chunk: usize| {
        exchange::import_in_chunks(store, MODEL, 4, src.path(), Encoding::F32, NO_ANN, chunk)
            .unwrap_err()
            .to_string()
    };
    for chunk in [THREE_ROWS, 1, npy::CHUNK_BYTES] {
        // Into an index holding an earlier import: it stays exactly as it was.
        let (_idx, mut store) = index_with_one_import();
        let before = snapshot(&store);
        assert_eq!(refused(&mut store, chunk), said);
        assert_eq!(snapshot(&store), before, "chunk {chunk}: the index changed");

        // Into an empty index: no model row, no file is left behind.
        let idx = tempfile::tempdir().unwrap();
        let mut store = Store::open(idx.path()).unwrap();
        assert_eq!(refused(&mut store, chunk), said);
        assert!(store.models().unwrap().is_empty());
        assert_eq!(store.file_count().unwrap(), 0);
        // The lock was let go.
        std::fs::remove_file(&npy_path).unwrap();
        write_shard(src.path(), 1, &many_rows(2), &["/q/0.jpg", "/q/1.jpg"]);
        assert_eq!(import(&mut store, src.path(), 4).unwrap().rows, 5);
        // Cut shard 1 again for the next chunk size.
        let (again, _) = folder_with_second_shard_cut_in_the_middle();
        std::fs::copy(again.path().join("img_emb/img_emb_1.npy"), &npy_path).unwrap();
        std::fs::copy(
            again.path().join("metadata/metadata_1.parquet"),
            src.path().join("metadata/metadata_1.parquet"),
        )
        .unwrap();
    }
}

/// A damaged metadata file is refused by name, whatever byte is wrong: the
/// parquet reader panics on some (a corrupt dictionary page), which import
/// turns into that file's error instead of aborting. Every byte of a small
/// file is changed in turn, to three values.
#[test]
fn a_damaged_metadata_file_is_an_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ["/p/a.jpg", "/p/b.jpg", "/p/a.jpg", "/p/c.jpg"];
    write_shard(dir.path(), 0, &many_rows(4), &paths);
    let meta = dir.path().join("metadata/metadata_0.parquet");
    let good = std::fs::read(&meta).unwrap();
    let idx = tempfile::tempdir().unwrap();
    let mut store = Store::open(idx.path()).unwrap();
    // Undamaged: the repeated path is stored once and counted.
    let summary = import(&mut store, dir.path(), 4).unwrap();
    assert_eq!((summary.rows, summary.duplicates), (4, 1));
    assert_eq!(store.file_count().unwrap(), 3);
    let (mut refused, mut damaged) = (0, 0);
    for at in 0..good.len() {
        for value in [0x00, 0xff, good[at] ^ 0x10] {
            if good[at] == value {
                continue;
            }
            let mut bytes = good.clone();
            bytes[at] = value;
            std::fs::write(&meta, &bytes).unwrap();
            // Each attempt is all or nothing: either it imports, or the
            // index stays as it was.
            let before = snapshot(&store);
            match import(&mut store, dir.path(), 4) {
                Ok(_) => {}
                Err(e) => {
                    refused += 1;
                    let e = e.to_string();
                    assert!(e.contains("metadata_0.parquet"), "byte {at}: {e}");
                    damaged += e.contains("damaged: the parquet reader failed") as usize;
                    assert_eq!(snapshot(&store), before, "byte {at}");
                }
            }
        }
    }
    assert!(
        refused > 0 && damaged > 0,
        "{refused} refused, {damaged} by a panic"
    );
}
