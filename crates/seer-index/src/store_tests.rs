//! Tests of the store's per-file lookups, and of opening an index on a disk
//! that is full (or was, while the index was created).

#[cfg(test)]
mod tests {
    use crate::store::Store;
    use crate::store::{write, FileRecord};
    use crate::test_index::store_with_vectors;

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

    /// One more file with vector `v`, in its own commit; its row id.
    fn add_file(store: &mut Store, path: &str, v: &[f32]) -> i64 {
        let tx = store.transaction().unwrap();
        let model = write::model_id(&tx, "m", 8).unwrap();
        let file = FileRecord {
            path: path.into(),
            ..Default::default()
        };
        let id = write::upsert_file(&tx, &file).unwrap();
        write::put_embedding(&tx, id, model, crate::Encoding::F32, v).unwrap();
        write::bump_generation(&tx).unwrap();
        tx.commit().unwrap();
        id
    }

    fn unit(d: usize, sign: f32) -> Vec<f32> {
        let mut v = vec![0.0; 8];
        v[d] = sign;
        v
    }

    /// The best graph hit for `query` (the graph must be in use).
    fn graph_hit(store: &Store, query: &[f32]) -> crate::Hit {
        let model = store.choose_model(Some("m")).unwrap();
        let options = crate::SearcherOptions {
            ann_threshold: 10,
            resident: false,
        };
        let searcher = crate::Searcher::open(store, model, options).unwrap();
        assert!(searcher.is_approximate());
        let search = crate::SearchOptions {
            k: 1,
            ..Default::default()
        };
        searcher
            .rank(store, query, &search, None)
            .unwrap()
            .remove(0)
    }

    /// With `synchronous=NORMAL` a power cut can undo the database's last
    /// commit while the graph and its generation file (fsynced) survive. The
    /// next run commits other content as the same generation, under the same
    /// row id: the graph was trusted as current (and a sync by difference kept
    /// the lost vector under that id), so searches missed the new photo.
    #[test]
    fn a_graph_of_commits_a_power_cut_undid_is_not_current() {
        use crate::ann::{graph_state, sync_in_chunks, GraphState};
        let dir = tempfile::tempdir().unwrap();
        let saved = tempfile::tempdir().unwrap();
        let db = dir.path().join(crate::store::DATABASE_FILE);
        let (store, _) = store_with_vectors(dir.path());
        let model = store.choose_model(Some("m")).unwrap();
        sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        // Closed: the database is the one file (no log), as the power cut
        // will leave it.
        drop(store);
        std::fs::copy(&db, saved.path().join("index.sqlite")).unwrap();

        // The commit the power cut will undo, and the graph synced with it.
        let mut store = Store::open(dir.path()).unwrap();
        let lost = add_file(&mut store, "/p/lost.jpg", &unit(7, -1.0));
        let lost_generation = store.generation().unwrap();
        let lost_stamp = store.generation_stamp().unwrap();
        let model = store.choose_model(Some("m")).unwrap();
        let synced = sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!((synced.inserted, synced.total), (1, 41));
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::Current);
        drop(store);

        // The power cut: the database as before that commit, the graph files
        // as saved.
        for log in ["index.sqlite-wal", "index.sqlite-shm"] {
            let _ = std::fs::remove_file(dir.path().join(log));
        }
        std::fs::copy(saved.path().join("index.sqlite"), &db).unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let new = add_file(&mut store, "/p/new.jpg", &unit(7, 1.0));
        assert_eq!(new, lost, "the row id is reused");
        assert_eq!(store.generation().unwrap(), lost_generation);

        let model = store.choose_model(Some("m")).unwrap();
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::OutOfDate);
        let exact = crate::Searcher::open(
            &store,
            model.clone(),
            crate::SearcherOptions {
                ann_threshold: 10,
                resident: false,
            },
        )
        .unwrap();
        assert!(!exact.is_approximate(), "searches are exact meanwhile");
        // What a cache of searchers (the server's) compares tells them apart.
        assert_eq!(exact.generation(), lost_generation);
        assert_ne!(exact.stamp(), lost_stamp);

        // A sync brings the graph in line: the new photo is found by its own
        // vector, the lost one's is gone.
        let synced = sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!(synced.total, 41);
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::Current);
        let hit = graph_hit(&store, &unit(7, 1.0));
        assert_eq!(hit.path, "/p/new.jpg");
        assert!(hit.score > 0.999, "{}", hit.score);
        assert_ne!(graph_hit(&store, &unit(7, -1.0)).path, "/p/new.jpg");
    }

    /// A generation file an older seer wrote (a bare counter, no token) over
    /// an index it wrote: the graph is out of date once, and a normal sync
    /// (by difference: nothing to insert) makes it current again.
    #[test]
    fn an_old_generation_file_is_out_of_date_once() {
        use crate::ann::{graph_state, sync_in_chunks, GraphState};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_vectors(dir.path());
        let model = store.choose_model(Some("m")).unwrap();
        sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        drop(store);
        // As the older seer left them.
        let db = rusqlite::Connection::open(dir.path().join(crate::store::DATABASE_FILE)).unwrap();
        db.execute(
            "DELETE FROM meta WHERE key = 'generation_token' OR key LIKE 'ann_lineage_%'",
            [],
        )
        .unwrap();
        let counter: String = db
            .query_row("SELECT value FROM meta WHERE key = 'generation'", [], |r| {
                r.get(0)
            })
            .unwrap();
        drop(db);
        let record = dir
            .path()
            .join(format!("ann-model-{}.generation", model.id));
        std::fs::write(&record, &counter).unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::OutOfDate);
        let synced = sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!((synced.inserted, synced.removed, synced.total), (0, 0, 40));
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::Current);
        assert!(graph_hit(&store, &unit(0, 1.0)).path.starts_with("/p/"));
        // Current now: the next sync does nothing.
        let again = sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!((again.inserted, again.removed), (0, 0));
    }

    /// `seer index --rebuild-graph` rebuilds with the store read only: it
    /// cannot commit a new lineage, and the next sync is still by difference.
    #[test]
    fn a_graph_rebuilt_read_only_is_then_synced_by_difference() {
        use crate::ann::{graph_state, rebuild_in_chunks, sync_in_chunks, GraphState};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_vectors(dir.path());
        let model = store.choose_model(Some("m")).unwrap();
        sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        drop(store);

        let read_only = Store::open_read_only(dir.path()).unwrap();
        let built = rebuild_in_chunks(&read_only, &model, 10, 7)
            .unwrap()
            .unwrap();
        assert_eq!(built.total, 40);
        assert_eq!(
            graph_state(&read_only, &model).unwrap(),
            GraphState::Current
        );
        drop(read_only);

        let mut store = Store::open(dir.path()).unwrap();
        add_file(&mut store, "/p/new.jpg", &unit(7, 1.0));
        let model = store.choose_model(Some("m")).unwrap();
        assert_eq!(graph_state(&store, &model).unwrap(), GraphState::OutOfDate);
        let synced = sync_in_chunks(&store, &model, 10, 7).unwrap().unwrap();
        assert_eq!((synced.inserted, synced.removed, synced.total), (1, 0, 41));
        assert_eq!(graph_hit(&store, &unit(7, 1.0)).path, "/p/new.jpg");
    }
}
