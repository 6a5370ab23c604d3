//! Tests of the store's per-file lookups, and of opening an index on a disk
//! that is full (or was, while the index was created).

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

    /// An index of one file with a vector, closed (no -wal or -shm left).
    fn small_index(dir: &std::path::Path) {
        let mut store = Store::open(dir).unwrap();
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
        tx.commit().unwrap();
    }

    /// Every reader of a WAL database needs SQLite's shared-memory file, which
    /// a full disk keeps SQLite from growing ("disk I/O error": every search
    /// failed). A named pipe in its place, which cannot grow either, stands
    /// for that here: with an empty log the index is read all the same, from
    /// the database file alone.
    #[cfg(unix)]
    #[test]
    fn an_index_whose_shared_memory_cannot_grow_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("a ?#% index");
        small_index(&index);
        let shm = index.join("index.sqlite-shm");
        assert!(!shm.exists(), "closed cleanly");
        let made = std::process::Command::new("mkfifo")
            .arg(&shm)
            .status()
            .unwrap();
        assert!(made.success());
        let store = Store::open_read_only(&index).unwrap();
        let models = store.models().unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].vectors, 1);
        assert_eq!(store.roots().unwrap().len(), 0);
        drop(store);

        // A log with commits in it holds what the database file lacks: then
        // the failure is reported, never an older state of the index.
        std::fs::write(index.join("index.sqlite-wal"), [1u8; 64]).unwrap();
        let err = Store::open_read_only(&index).err().expect("refused");
        assert!(
            err.to_string().contains("index.sqlite"),
            "names the database: {err}"
        );
    }

    /// A new index whose creation failed (a full disk) is an empty database
    /// file: readers say there is no index yet, not an SQL error.
    #[test]
    fn an_index_whose_creation_failed_reads_as_no_index_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(crate::store::DATABASE_FILE), b"").unwrap();
        let err = Store::open_read_only(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("no index here yet"), "{err}");
        // The next run creates it.
        small_index(dir.path());
        assert_eq!(
            Store::open_read_only(dir.path())
                .unwrap()
                .models()
                .unwrap()
                .len(),
            1
        );
    }

    /// SQLite's "database or disk is full" (and its I/O errors whose cause is
    /// a full disk) are told in the operating system's words.
    #[test]
    fn a_full_disk_is_said_in_words() {
        use rusqlite::ffi;
        let failure = |code| {
            rusqlite::Error::SqliteFailure(
                ffi::Error::new(code),
                Some("database or disk is full".into()),
            )
        };
        let path = std::path::PathBuf::from("/idx/index.sqlite");
        let full = crate::IndexError::database(path.clone(), failure(ffi::SQLITE_FULL), None);
        assert!(
            full.to_string()
                .starts_with("/idx/index.sqlite: No space left on device: "),
            "{full}"
        );
        assert!(
            std::error::Error::source(&full).is_some(),
            "SQLite's error is kept"
        );
        let shm =
            crate::IndexError::database(path.clone(), failure(ffi::SQLITE_IOERR_SHMSIZE), Some(28));
        assert!(
            shm.to_string()
                .starts_with("/idx/index.sqlite: No space left on device (os error 28): "),
            "{shm}"
        );
        // Another I/O error is left as SQLite says it.
        let other = crate::IndexError::database(path, failure(ffi::SQLITE_IOERR_SHMSIZE), Some(5));
        assert!(
            other.to_string().contains("index database error"),
            "{other}"
        );
    }
}
