//! One file's record by row id: the server addresses files by id and must know
//! what the index holds for that id (size, mtime, content hash, failure, vector)
//! before it reads anything from disk.

use rusqlite::{params, OptionalExtension};

use crate::error::Result;
use crate::store::{Store, StoredFile};

impl Store {
    /// The file with row id `id`, with whether it has a vector of `model_id`
    /// (one indexed lookup by primary key).
    pub fn file_by_id(&self, id: i64, model_id: i64) -> Result<Option<StoredFile>> {
        self.conn
            .query_row(
                "SELECT f.id, f.path, f.size, f.mtime_ns, f.hash, f.error,
                        EXISTS (SELECT 1 FROM embeddings e WHERE e.file_id = f.id AND e.model_id = ?2)
                 FROM files f WHERE f.id = ?1",
                params![id, model_id],
                |r| {
                    Ok(StoredFile {
                        id: r.get(0)?,
                        path: r.get(1)?,
                        size: r.get(2)?,
                        mtime_ns: r.get(3)?,
                        hash: r
                            .get::<_, Option<Vec<u8>>>(4)?
                            .and_then(|h| h.try_into().ok()),
                        error: r.get(5)?,
                        embedded: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{write, FileRecord};

    #[test]
    fn a_file_is_found_by_id_with_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let tx = store.transaction().unwrap();
        let model = write::model_id(&tx, "m", 2).unwrap();
        let file = FileRecord {
            path: "/photos/a.jpg".into(),
            size: 10,
            mtime_ns: 20,
            hash: Some([7; 32]),
            ..Default::default()
        };
        let id = write::upsert_file(&tx, &file).unwrap();
        write::put_embedding(&tx, id, model, crate::Encoding::F32, &[1.0, 0.0]).unwrap();
        write::record_failure(&tx, "/photos/b.jpg", 1, 2, "not an image").unwrap();
        tx.commit().unwrap();

        let a = store.file_by_id(id, model).unwrap().unwrap();
        assert_eq!(
            (a.path.as_str(), a.size, a.mtime_ns),
            ("/photos/a.jpg", 10, 20)
        );
        assert!(a.embedded && a.error.is_none() && a.hash == Some([7; 32]));
        // Another model has no vector for it.
        assert!(!store.file_by_id(id, model + 1).unwrap().unwrap().embedded);
        let failed = store.file_by_id(id + 1, model).unwrap().unwrap();
        assert!(!failed.embedded && failed.error.is_some());
        assert!(store.file_by_id(id + 2, model).unwrap().is_none());
    }
}
