//! Forgetting an indexed folder (`seer index --forget DIR`): the folder
//! leaves the index's roots, and every indexed file at or below it leaves the
//! index with its vectors, video frames and captions, so searches no longer
//! find them and a bare `seer index` no longer walks there. Files on disk are
//! never touched. A file that also lies under another indexed folder (nested
//! roots) stays.
//!
//! Only a whole indexed folder can be forgotten: a subfolder of one would come
//! back at the next run over its root, so it is refused, saying which root it
//! lies under.

use std::path::Path;

use crate::error::{IndexError, Result};
use crate::lock::IndexLock;
use crate::pathcodec;
use crate::store::{write, Store};

/// What forgetting one folder did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Forgotten {
    /// The folder, as shown to people.
    pub folder: String,
    /// Indexed files (and failed ones) that left the index.
    pub files: usize,
}

/// Forgets the indexed folder `folder` (see the module docs); the caller holds
/// the index's lock. The approximate graphs of the index's models follow
/// (rebuilt or dropped as `ann_threshold` says, as after an indexing run).
pub fn forget_folder(
    store: &mut Store,
    _lock: &IndexLock,
    folder: &Path,
    ann_threshold: usize,
) -> Result<Forgotten> {
    let roots = store.roots()?;
    // A folder gone from disk (a common reason to forget it) has no
    // canonical path: its absolute path names it as the index stored it.
    let key = std::fs::canonicalize(folder)
        .or_else(|_| std::path::absolute(folder))
        .map(|p| pathcodec::to_stored(&p))
        .map_err(|e| IndexError::io(folder, e))?;
    if !roots.contains(&key) {
        return Err(not_a_root(folder, &key, &roots));
    }
    let others: Vec<&String> = roots.iter().filter(|r| **r != key).collect();
    let under_another = |path: &str| {
        others
            .iter()
            .any(|r| path == r.as_str() || is_below(path, r))
    };
    let leaving: Vec<i64> = store
        .files_under(std::slice::from_ref(&key), 0)?
        .into_iter()
        .filter(|f| !under_another(&f.path))
        .map(|f| f.id)
        .collect();
    let db_error = store.error_mapper();
    let tx = store.transaction()?;
    for id in &leaving {
        write::remove_file(&tx, *id).map_err(&db_error)?;
    }
    write::remove_root(&tx, &key).map_err(&db_error)?;
    // Walk errors below it, unless a nested root still walks there.
    if !others.iter().any(|r| is_below(r, &key)) {
        write::replace_walk_errors(&tx, std::slice::from_ref(&key), &[]).map_err(&db_error)?;
    }
    write::bump_generation(&tx).map_err(&db_error)?;
    tx.commit().map_err(&db_error)?;
    for model in store.models()? {
        crate::ann::sync(store, &model, ann_threshold)?;
    }
    Ok(Forgotten {
        folder: pathcodec::display_stored(&key),
        files: leaving.len(),
    })
}

/// Whether stored path `path` lies strictly below the stored folder `root`.
fn is_below(path: &str, root: &str) -> bool {
    path.strip_prefix(root.trim_end_matches('/'))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Why `folder` (stored as `key`) cannot be forgotten: which indexed folder it
/// lies under, if any, and which folders there are.
fn not_a_root(folder: &Path, key: &str, roots: &[String]) -> IndexError {
    let shown: Vec<String> = roots.iter().map(|r| pathcodec::display_stored(r)).collect();
    let listed = match shown.is_empty() {
        true => "the index has none".to_string(),
        false => format!("indexed: {}", shown.join(", ")),
    };
    let message = match roots.iter().find(|r| is_below(key, r)) {
        Some(root) => format!(
            "lies inside the indexed folder {}: only a whole indexed folder can be forgotten \
             ({listed})",
            pathcodec::display_stored(root)
        ),
        None => format!("is not an indexed folder ({listed})"),
    };
    IndexError::File {
        path: folder.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_index::{encoder_model, index_options};

    fn png(path: &Path, rgb: [u8; 3]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        seer_image::image::RgbImage::from_pixel(8, 8, seer_image::image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    fn stored(path: &Path) -> String {
        pathcodec::to_stored(&path.canonicalize().unwrap())
    }

    /// Forgetting a folder removes it from the roots and its files from the
    /// index (vectors included), keeps the other folders' files (a nested
    /// root's too), leaves the files on disk, and refuses a subfolder or a
    /// folder that was never indexed, naming the roots.
    #[test]
    fn a_forgotten_folder_leaves_the_index_and_the_disk_stays() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos");
        let other = dir.path().join("other");
        png(&photos.join("a.png"), [200, 10, 10]);
        png(&photos.join("album/b.png"), [10, 200, 10]);
        png(&photos.join("nested/c.png"), [10, 10, 200]);
        png(&other.join("d.png"), [100, 100, 10]);
        let mut store = Store::open(&dir.path().join("index")).unwrap();
        for root in [&photos, &photos.join("nested"), &other] {
            crate::index(
                &mut store,
                &encoder_model(),
                &index_options(root, None),
                &mut |_| {},
            )
            .unwrap();
        }
        let model = store.choose_model(None).unwrap();
        assert_eq!(store.load_vectors(&model).unwrap().len(), 4);

        let lock = IndexLock::try_acquire(store.dir()).unwrap();
        let gone = forget_folder(&mut store, &lock, &photos, 1_000_000).unwrap();
        assert_eq!(gone.files, 2, "{gone:?}");
        let mut left: Vec<String> = store.load_vectors(&model).unwrap().paths;
        left.sort();
        assert_eq!(
            left,
            [
                stored(&other.join("d.png")),
                stored(&photos.join("nested/c.png"))
            ]
        );
        assert_eq!(
            store.roots().unwrap(),
            [stored(&other), stored(&photos.join("nested"))]
        );
        assert!(photos.join("a.png").exists() && photos.join("album/b.png").exists());

        let e = forget_folder(&mut store, &lock, &photos.join("nested/deeper"), 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lies inside the indexed folder"), "{e}");
        let e = forget_folder(&mut store, &lock, &photos, 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not an indexed folder (indexed: "), "{e}");

        // A folder deleted from disk is forgotten by the path it had.
        std::fs::remove_dir_all(&other).unwrap();
        let gone = forget_folder(&mut store, &lock, &other, 1_000_000).unwrap();
        assert_eq!(gone.files, 1);
        assert_eq!(store.load_vectors(&model).unwrap().len(), 1);
    }
}
