//! Tests of the store's per-file lookups.

#[cfg(test)]
mod tests {
    use crate::store::Store;
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
