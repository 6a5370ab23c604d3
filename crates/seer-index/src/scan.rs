//! Walking the photo folders and deciding what an indexing run must do.
//!
//! The decision ([`plan`]) is a pure function of what is on disk, what the index
//! holds and a content hasher, so every incremental rule is unit-tested without a
//! model: unchanged files are skipped on size + mtime; a touched file whose
//! content hash is unchanged is not re-embedded; a file that disappeared from one
//! path and appeared at another with the same content is moved; a new copy of an
//! already embedded file reuses its vector; files gone from disk are removed.
//!
//! The walk ([`walk`]) follows a symlink only when its real path lies within one
//! of the index's roots; every entry it cannot read or follow (broken links,
//! loops, links out of the roots, unreadable folders, over-long paths) is
//! returned with its reason, for `seer status`. Paths are kept in the stored
//! form of [`crate::pathcodec`], so names that are not UTF-8 are indexed too.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use seer_engine::embed::{has_image_extension, is_broken_link, is_hidden_or_system};

use crate::pathcodec;
use crate::store::StoredFile;

/// A file's modification time as the index records it: nanoseconds since the
/// epoch, 0 where the system has none (anyone comparing a file with its record
/// must compute it the same way).
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A file found on disk; `path` is in the index's stored form (see [`crate::pathcodec`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walked {
    pub path: String,
    pub size: i64,
    pub mtime_ns: i64,
}

/// Why a symlink is not followed.
pub const OUTSIDE_ROOTS: &str = "symlink points outside the indexed folders";

/// Walks `roots` (canonical paths) for image files (hidden and system entries
/// skipped unless `include_hidden`). Returns the files and, as (stored path,
/// reason), everything that could not be walked: unreadable folders, broken
/// symlinks, symlink loops, symlinks leading out of the roots, names too long.
///
/// Symlinks are followed only when their real path lies within one of `roots`:
/// a link inside a photo folder must not make the index (and the server, which
/// serves indexed files) reach files nobody asked to index. Loops are detected
/// by walkdir (a link to one of its own ancestors) and reported, never walked.
pub fn walk(
    roots: &[PathBuf],
    include_hidden: bool,
    videos: bool,
) -> (Vec<Walked>, Vec<(String, String)>) {
    let indexable = |path: &Path| {
        has_image_extension(path) || (videos && seer_video::has_video_extension(path))
    };
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for root in roots {
        let mut outside = Vec::new();
        let walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .into_iter()
            .filter_entry(|e| {
                if !(include_hidden
                    || e.depth() == 0
                    || !is_hidden_or_system(&e.file_name().to_string_lossy()))
                {
                    return false;
                }
                if e.depth() > 0 && e.path_is_symlink() && !within(e.path(), roots) {
                    // Only links to what would have been indexed are worth a report.
                    if e.file_type().is_dir() || indexable(e.path()) {
                        outside.push(pathcodec::to_stored(e.path()));
                    }
                    return false;
                }
                true
            });
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().unwrap_or(root);
                    // A dangling link to what would not be indexed anyway
                    // (notes.txt) is no failure of the run.
                    let dangling_non_media = is_broken_link(&e) && !indexable(path);
                    if !dangling_non_media {
                        problems.push((pathcodec::to_stored(path), walk_error_reason(&e)));
                    }
                    continue;
                }
            };
            if !entry.file_type().is_file() || !indexable(entry.path()) {
                continue;
            }
            let path = pathcodec::to_stored(entry.path());
            match entry.metadata() {
                Ok(meta) => files.push(Walked {
                    path,
                    size: meta.len() as i64,
                    mtime_ns: mtime_ns(&meta),
                }),
                Err(e) => problems.push((path, walk_error_reason(&e))),
            }
        }
        problems.extend(outside.into_iter().map(|p| (p, OUTSIDE_ROOTS.to_string())));
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    problems.sort();
    problems.dedup();
    (files, problems)
}

/// Why an indexed file at `path` cannot be read now as one under `roots`: it
/// is gone ([`GONE`]), or it resolves outside them ([`OUTSIDE_ROOTS`]); None
/// when it can be. (For readers of indexed files, who must not call a deleted
/// file a symlink out of the roots.)
pub fn gone_or_outside(path: &Path, roots: &[PathBuf]) -> Option<&'static str> {
    if within(path, roots) {
        return None;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(GONE),
        _ => Some(OUTSIDE_ROOTS),
    }
}

/// An indexed file that is no longer there.
pub const GONE: &str = "no longer exists (deleted or moved since it was indexed)";

/// Whether `path`'s real location (all symlinks resolved) is within one of the
/// canonical `roots`. An unresolvable path is not: it cannot be read anyway.
pub fn within(path: &Path, roots: &[PathBuf]) -> bool {
    std::fs::canonicalize(path).is_ok_and(|real| roots.iter().any(|r| real.starts_with(r)))
}

/// A walk error's cause, without the path (which is stored beside it) and in
/// words a user can act on.
fn walk_error_reason(e: &walkdir::Error) -> String {
    if let Some(ancestor) = e.loop_ancestor() {
        return format!(
            "symlink loop: it leads back to {}",
            pathcodec::display_path(ancestor)
        );
    }
    let Some(io) = e.io_error() else {
        return e.to_string();
    };
    if is_broken_link(e) {
        "broken symlink: its target does not exist".into()
    } else {
        io.to_string()
    }
}

/// A file to embed; `known_hash` when planning already read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToEmbed {
    pub file: Walked,
    pub known_hash: Option<[u8; 32]>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub embed: Vec<ToEmbed>,
    /// (stored file id, its new location)
    pub moves: Vec<(i64, Walked)>,
    /// (file id with the same content and a vector, the new file, its hash)
    pub copies: Vec<(i64, Walked, [u8; 32])>,
    /// (stored file id, new mtime): content unchanged, only the timestamp moved.
    pub touches: Vec<(i64, i64)>,
    /// (stored file id, path) of files no longer on disk.
    pub removals: Vec<(i64, String)>,
    pub unchanged: usize,
    /// Files that failed before and have not changed since (not retried).
    pub unchanged_failures: usize,
}

/// Content lookups planning needs; the index implements it over the database.
pub trait ContentLookup {
    /// Could a file of this size be a copy or a move of a stored file?
    fn size_is_known(&self, size: i64) -> bool;
    /// A stored file with this content that already has a vector.
    fn embedded_with_hash(&self, hash: &[u8; 32]) -> Option<i64>;
}

/// Decides what to do. `stored` is what the index holds under the walked roots;
/// `hash` reads a file's content hash (None if unreadable: it is then embedded,
/// and the embedding stage reports the error).
pub fn plan(
    walked: &[Walked],
    stored: &[StoredFile],
    lookup: &dyn ContentLookup,
    hash: &(dyn Fn(&str) -> Option<[u8; 32]> + Sync),
) -> Plan {
    use rayon::prelude::*;

    let by_path: HashMap<&str, &StoredFile> = stored.iter().map(|s| (s.path.as_str(), s)).collect();
    let on_disk: HashSet<&str> = walked.iter().map(|w| w.path.as_str()).collect();
    let mut plan = Plan::default();

    // Stored files that vanished: candidates for moves, by content.
    let mut vanished: HashMap<[u8; 32], Vec<&StoredFile>> = HashMap::new();
    let mut vanished_sizes = HashSet::new();
    for s in stored.iter().filter(|s| !on_disk.contains(s.path.as_str())) {
        match s.hash {
            Some(h) if s.error.is_none() => {
                vanished.entry(h).or_default().push(s);
                vanished_sizes.insert(s.size);
            }
            _ => plan.removals.push((s.id, s.path.clone())),
        }
    }

    enum Need<'a> {
        Done,
        Embed(&'a Walked),
        // Same size and path, new mtime: hash to see if the content changed.
        Confirm(&'a Walked, &'a StoredFile),
        // New path whose size matches something stored: hash to find moves/copies.
        Match(&'a Walked),
    }
    let needs: Vec<Need> = walked
        .iter()
        .map(|w| match by_path.get(w.path.as_str()) {
            Some(s) if s.size == w.size && s.mtime_ns == w.mtime_ns => {
                if s.error.is_some() {
                    plan.unchanged_failures += 1;
                    Need::Done
                } else if s.embedded {
                    plan.unchanged += 1;
                    Need::Done
                } else {
                    Need::Embed(w) // indexed with another model only
                }
            }
            Some(s) if s.size == w.size && s.hash.is_some() && s.error.is_none() => {
                Need::Confirm(w, s)
            }
            Some(_) => Need::Embed(w),
            None if vanished_sizes.contains(&w.size) || lookup.size_is_known(w.size) => {
                Need::Match(w)
            }
            None => Need::Embed(w),
        })
        .collect();

    // Hash only the files that need it, in parallel (this is the I/O-heavy part).
    let hashes: Vec<Option<[u8; 32]>> = needs
        .par_iter()
        .map(|n| match n {
            Need::Confirm(w, _) | Need::Match(w) => hash(&w.path),
            _ => None,
        })
        .collect();

    for (need, h) in needs.into_iter().zip(hashes) {
        match need {
            Need::Done => {}
            Need::Embed(w) => plan.embed.push(ToEmbed {
                file: w.clone(),
                known_hash: None,
            }),
            Need::Confirm(w, s) => match h {
                Some(h) if Some(h) == s.hash && s.embedded => plan.touches.push((s.id, w.mtime_ns)),
                _ => plan.embed.push(ToEmbed {
                    file: w.clone(),
                    known_hash: h,
                }),
            },
            Need::Match(w) => {
                let Some(h) = h else {
                    plan.embed.push(ToEmbed {
                        file: w.clone(),
                        known_hash: None,
                    });
                    continue;
                };
                if let Some(s) = vanished.get_mut(&h).and_then(|v| v.pop()) {
                    plan.moves.push((s.id, w.clone()));
                } else if let Some(id) = lookup.embedded_with_hash(&h) {
                    plan.copies.push((id, w.clone(), h));
                } else {
                    plan.embed.push(ToEmbed {
                        file: w.clone(),
                        known_hash: Some(h),
                    });
                }
            }
        }
    }
    for files in vanished.into_values() {
        plan.removals
            .extend(files.into_iter().map(|s| (s.id, s.path.clone())));
    }
    plan.removals.sort_by(|a, b| a.1.cmp(&b.1));
    plan
}

/// The cause given to a listed file that is gone by the time it is read
/// (deleted, or its folder renamed, during the run): the run counts it as
/// removed, not failed, and the next run finds it wherever it went.
pub const VANISHED: &str = "was deleted or moved while the run was under way";

/// What a file that the walk listed says when it is no longer a regular
/// file by the time it is read (replaced by a FIFO, a device, a socket or a
/// folder).
pub const NOT_A_FILE: &str =
    "is no longer a regular file (replaced by a folder, FIFO, device or socket)";

/// Opens a listed file for reading, refusing anything but a regular file.
/// The walk saw a regular file, but the path may since have been replaced:
/// opening a FIFO for reading would block until a writer comes (forever, in
/// an unattended run), so the open does not wait (`O_NONBLOCK`, which reads
/// of a regular file ignore), and the opened file's own metadata decides.
/// That metadata (size, mtime) describes what is read, not what was listed.
pub fn open_regular(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(std::io::Error::other(NOT_A_FILE));
    }
    Ok((file, metadata))
}

/// blake3 of a file's content, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(open_regular(path)?.0)?;
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deleted file is gone, not "outside the roots"; a link out of them is.
    #[test]
    fn a_deleted_file_is_gone_and_a_link_out_is_outside() {
        let inside = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let roots = [inside.path().canonicalize().unwrap()];
        let here = roots[0].join("a.jpg");
        std::fs::write(&here, b"x").unwrap();
        assert_eq!(gone_or_outside(&here, &roots), None);
        std::fs::remove_file(&here).unwrap();
        assert_eq!(gone_or_outside(&here, &roots), Some(GONE));
        let target = outside.path().join("b.jpg");
        std::fs::write(&target, b"x").unwrap();
        std::os::unix::fs::symlink(&target, &here).unwrap();
        assert_eq!(gone_or_outside(&here, &roots), Some(OUTSIDE_ROOTS));
    }

    struct Lookup(HashMap<[u8; 32], i64>, HashSet<i64>);

    impl ContentLookup for Lookup {
        fn size_is_known(&self, size: i64) -> bool {
            self.1.contains(&size)
        }
        fn embedded_with_hash(&self, hash: &[u8; 32]) -> Option<i64> {
            self.0.get(hash).copied()
        }
    }

    fn w(path: &str, size: i64, mtime: i64) -> Walked {
        Walked {
            path: path.into(),
            size,
            mtime_ns: mtime,
        }
    }

    fn s(id: i64, path: &str, size: i64, mtime: i64, hash: u8) -> StoredFile {
        StoredFile {
            id,
            path: path.into(),
            size,
            mtime_ns: mtime,
            hash: Some([hash; 32]),
            error: None,
            embedded: true,
        }
    }

    /// Content hashes by path: the first byte of the file name stands for the content.
    fn hasher(path: &str) -> Option<[u8; 32]> {
        let name = path.rsplit('/').next()?;
        Some([name.as_bytes()[0]; 32])
    }

    fn lookup_for(stored: &[StoredFile]) -> Lookup {
        Lookup(
            stored
                .iter()
                .filter(|s| s.embedded)
                .map(|s| (s.hash.unwrap(), s.id))
                .collect(),
            stored.iter().map(|s| s.size).collect(),
        )
    }

    #[test]
    fn hidden_and_system_folders_are_skipped_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["photos", ".thumbnails", "@eaDir", "$RECYCLE.BIN"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("a.jpg"), b"x").unwrap();
        }
        std::fs::write(dir.path().join("photos/.hidden.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("photos/notes.txt"), b"x").unwrap();
        let (files, problems) = walk(&[dir.path().to_path_buf()], false, true);
        assert!(problems.is_empty());
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(dir.path().to_str().unwrap())
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["/photos/a.jpg"]);
        let (files, _) = walk(&[dir.path().to_path_buf()], true, true);
        assert_eq!(files.len(), 5);
    }

    fn problems_by_name(problems: &[(String, String)]) -> Vec<(String, String)> {
        problems
            .iter()
            .map(|(p, why)| {
                let name = p.rsplit('/').next().unwrap().to_string();
                (name, why.clone())
            })
            .collect()
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_only_within_the_roots_and_problems_are_named() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("album")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("album/in.jpg"), b"x").unwrap();
        std::fs::write(outside.join("secret.jpg"), b"x").unwrap();
        std::fs::write(outside.join("notes.txt"), b"x").unwrap();
        symlink(root.join("album/in.jpg"), root.join("link-in.jpg")).unwrap();
        symlink(outside.join("secret.jpg"), root.join("escape.jpg")).unwrap();
        symlink(&outside, root.join("escape-dir")).unwrap();
        symlink(outside.join("notes.txt"), root.join("notes.txt")).unwrap();
        symlink(dir.path().join("nowhere.jpg"), root.join("dangling.jpg")).unwrap();
        symlink(dir.path().join("nowhere.txt"), root.join("dangling.txt")).unwrap();
        symlink(&root, root.join("album/loop")).unwrap();

        let roots = [root.canonicalize().unwrap()];
        let (files, problems) = walk(&roots, false, true);
        let names: Vec<&str> = files
            .iter()
            .map(|f| f.path.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["in.jpg", "link-in.jpg"]);
        let problems = problems_by_name(&problems);
        let why = |name: &str| {
            problems
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, w)| w.as_str())
                .unwrap_or_else(|| panic!("{name} not reported: {problems:?}"))
        };
        assert_eq!(why("escape.jpg"), OUTSIDE_ROOTS);
        assert_eq!(why("escape-dir"), OUTSIDE_ROOTS);
        assert!(
            why("dangling.jpg").contains("broken symlink"),
            "{problems:?}"
        );
        assert!(why("loop").contains("symlink loop"), "{problems:?}");
        // A link to something that would not be indexed anyway (notes.txt,
        // dangling.txt) is not noise in the report.
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[cfg(unix)]
    #[test]
    fn names_that_are_not_utf8_are_walked_and_stored_reversibly() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.jpg");
        std::fs::write(dir.path().join(name), b"x").unwrap();
        let (files, problems) = walk(&[dir.path().canonicalize().unwrap()], false, true);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(files.len(), 1);
        assert_eq!(
            crate::pathcodec::to_path(&files[0].path),
            dir.path().canonicalize().unwrap().join(name)
        );
        assert!(files[0]
            .path
            .ends_with(&crate::pathcodec::encode(b"/caf\xe9.jpg")));
    }

    #[test]
    fn unchanged_files_are_skipped_without_hashing() {
        let stored = vec![s(1, "/p/a.jpg", 10, 5, b'a'), s(2, "/p/b.jpg", 20, 5, b'b')];
        let walked = vec![w("/p/a.jpg", 10, 5), w("/p/b.jpg", 20, 5)];
        let p = plan(&walked, &stored, &lookup_for(&stored), &|_| {
            panic!("hashed an unchanged file")
        });
        assert_eq!(p.unchanged, 2);
        assert!(p.embed.is_empty() && p.moves.is_empty() && p.removals.is_empty());
    }

    #[test]
    fn new_and_changed_files_are_embedded() {
        let stored = vec![s(1, "/p/a.jpg", 10, 5, b'a')];
        let walked = vec![w("/p/a.jpg", 11, 6), w("/p/new.jpg", 99, 1)];
        let p = plan(&walked, &stored, &lookup_for(&stored), &hasher);
        let paths: Vec<&str> = p.embed.iter().map(|e| e.file.path.as_str()).collect();
        assert_eq!(paths, ["/p/a.jpg", "/p/new.jpg"]);
    }

    #[test]
    fn touched_file_with_same_content_is_not_reembedded() {
        let stored = vec![s(1, "/p/a.jpg", 10, 5, b'a')];
        let p = plan(
            &[w("/p/a.jpg", 10, 9)],
            &stored,
            &lookup_for(&stored),
            &hasher,
        );
        assert_eq!(p.touches, vec![(1, 9)]);
        assert!(p.embed.is_empty());
    }

    #[test]
    fn same_size_new_mtime_but_new_content_is_reembedded() {
        let stored = vec![s(1, "/p/a.jpg", 10, 5, b'z')];
        let p = plan(
            &[w("/p/a.jpg", 10, 9)],
            &stored,
            &lookup_for(&stored),
            &hasher,
        );
        assert_eq!(p.embed.len(), 1);
        assert_eq!(p.embed[0].known_hash, Some([b'a'; 32]));
    }

    #[test]
    fn renamed_file_is_moved_not_reembedded() {
        let stored = vec![s(1, "/p/old/x.jpg", 10, 5, b'x')];
        let p = plan(
            &[w("/p/new/x2.jpg", 10, 7)],
            &stored,
            &lookup_for(&stored),
            &hasher,
        );
        assert_eq!(p.moves, vec![(1, w("/p/new/x2.jpg", 10, 7))]);
        assert!(p.embed.is_empty() && p.removals.is_empty());
    }

    #[test]
    fn a_copy_reuses_the_vector_and_deleted_files_are_removed() {
        let stored = vec![
            s(1, "/p/a.jpg", 10, 5, b'a'),
            s(2, "/p/gone.jpg", 30, 5, b'g'),
        ];
        let walked = vec![w("/p/a.jpg", 10, 5), w("/p/a-copy.jpg", 10, 8)];
        let p = plan(&walked, &stored, &lookup_for(&stored), &hasher);
        assert_eq!(p.copies, vec![(1, w("/p/a-copy.jpg", 10, 8), [b'a'; 32])]);
        assert_eq!(p.removals, vec![(2, "/p/gone.jpg".to_string())]);
    }

    #[test]
    fn failures_are_not_retried_until_the_file_changes() {
        let mut bad = s(1, "/p/bad.jpg", 10, 5, b'b');
        bad.error = Some("truncated".into());
        bad.embedded = false;
        let stored = vec![bad];
        let p = plan(
            &[w("/p/bad.jpg", 10, 5)],
            &stored,
            &lookup_for(&stored),
            &hasher,
        );
        assert_eq!(p.unchanged_failures, 1);
        assert!(p.embed.is_empty());
        let p = plan(
            &[w("/p/bad.jpg", 12, 6)],
            &stored,
            &lookup_for(&stored),
            &hasher,
        );
        assert_eq!(p.embed.len(), 1);
    }

    #[test]
    fn files_indexed_with_another_model_are_embedded_for_this_one() {
        let mut other = s(1, "/p/a.jpg", 10, 5, b'a');
        other.embedded = false;
        let p = plan(
            &[w("/p/a.jpg", 10, 5)],
            &[other.clone()],
            &lookup_for(&[other]),
            &hasher,
        );
        assert_eq!(p.embed.len(), 1);
    }
}
