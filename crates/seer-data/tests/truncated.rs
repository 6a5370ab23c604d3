//! Shards cut short: wherever a shard ends before its end-of-archive marker,
//! reading it reports the shard (a sample with an empty key and an error) and
//! never passes the sample that was being read as good, since members of it
//! may lie past the cut. Whole shards, as real writers make them, read with no
//! error.

use std::io::Write;
use std::path::Path;

use seer_data::{read_source, DataSource, RawSample};
use seer_testkit::shared_data;

/// Four samples, each an image (sizes not multiples of 512, so members are
/// padded) and a caption, written by the `tar` crate (two zero blocks at the
/// end, no padding to a record). Returns the bytes and where the end-of-archive
/// marker starts.
fn shard_bytes() -> (Vec<u8>, usize) {
    let mut t = tar::Builder::new(Vec::new());
    for i in 0..4u8 {
        let image = vec![i + 1; 700 + 300 * i as usize];
        for (name, data) in [
            (format!("s{i}.jpg"), image),
            (format!("s{i}.txt"), format!("caption {i}").into_bytes()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, name, &data[..]).unwrap();
        }
    }
    let bytes = t.into_inner().unwrap();
    let marker = bytes.len() - 1024;
    assert!(bytes[marker..].iter().all(|b| *b == 0));
    (bytes, marker)
}

fn read(path: &Path) -> Vec<RawSample> {
    let mut out = Vec::new();
    read_source(&DataSource::Shard(path.to_path_buf()), &mut |s| {
        out.push(s);
        true
    });
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A sample reported as good holds exactly what was written.
fn is_whole(s: &RawSample) -> bool {
    let i: u8 = s.key[1..].parse().unwrap();
    s.image.as_ref().map(|(_, b)| b.clone()) == Some(vec![i + 1; 700 + 300 * i as usize])
        && s.caption.as_deref() == Some(format!("caption {i}").as_str())
}

/// The invariants of a cut shard: every sample before the cut that is good is
/// whole, the shard itself is reported last with an empty key, and no key is
/// reported twice.
fn assert_truncation_reported(rows: &[RawSample], what: &str) {
    let last = rows
        .last()
        .unwrap_or_else(|| panic!("{what}: nothing read"));
    assert!(
        last.key.is_empty() && last.error.is_some(),
        "{what}: the shard's own error row is missing: {rows:#?}"
    );
    for s in &rows[..rows.len() - 1] {
        assert!(!s.key.is_empty(), "{what}: {rows:#?}");
        if s.error.is_none() {
            assert!(is_whole(s), "{what}: {} passed as good but is cut", s.key);
        }
    }
    let mut keys: Vec<&str> = rows.iter().map(|s| s.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "{what}: a key twice: {rows:#?}");
}

#[test]
fn a_whole_shard_reads_with_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = shard_bytes();
    for (name, data) in [("whole.tar", bytes.clone()), ("whole.tar.gz", gzip(&bytes))] {
        let rows = read(&write(dir.path(), name, &data));
        assert_eq!(rows.len(), 4, "{name}: {rows:#?}");
        assert!(rows.iter().all(is_whole), "{name}: {rows:#?}");
    }
    // Padded to a 10240-byte record, as GNU tar and Python's tarfile write.
    let mut padded = bytes.clone();
    padded.resize(bytes.len().next_multiple_of(10240), 0);
    let rows = read(&write(dir.path(), "padded.tar", &padded));
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(is_whole));
    // An empty archive (only the marker) has no samples and no error.
    assert!(read(&write(dir.path(), "empty.tar", &[0; 1024])).is_empty());
}

#[test]
fn a_shard_cut_at_a_member_boundary_is_reported_with_its_last_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, marker) = shard_bytes();
    // The member boundaries: after s0.jpg's header and padded data, and so on.
    let mut boundaries = Vec::new();
    let mut at = 0;
    for i in 0..4usize {
        for size in [700 + 300 * i, format!("caption {i}").len()] {
            at += 512 + size.next_multiple_of(512);
            boundaries.push(at);
        }
    }
    assert_eq!(*boundaries.last().unwrap(), marker);
    for (m, &cut) in boundaries.iter().enumerate() {
        let path = write(dir.path(), "cut.tar", &bytes[..cut]);
        let rows = read(&path);
        let what = format!("cut after member {m} (byte {cut})");
        assert_truncation_reported(&rows, &what);
        // The sample the cut fell in or after is an error, not a good row:
        // before the fix a cut after `s1.jpg` passed s1 with no caption, and
        // a cut after `s1.txt` passed the shard as complete.
        let cut_sample = format!("s{}", m / 2);
        let s = rows.iter().find(|s| s.key == cut_sample).unwrap();
        assert!(s.error.is_some(), "{what}: {cut_sample} passed as good");
        let cause = rows.last().unwrap().error.as_deref().unwrap();
        assert!(cause.contains("truncated"), "{what}: {cause}");
        // Gzip'd, the stream whole and the tar inside it cut.
        let rows = read(&write(dir.path(), "cut.tar.gz", &gzip(&bytes[..cut])));
        assert_truncation_reported(&rows, &format!("{what}, gzip'd"));
    }
}

#[test]
fn a_shard_cut_anywhere_never_passes_a_cut_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, marker) = shard_bytes();
    let path = dir.path().join("cut.tar");
    // Every byte around each block boundary, and a stride through the rest.
    let cuts = (0..bytes.len()).filter(|c| !(3..=509).contains(&(c % 512)) || c % 37 == 0);
    for cut in cuts {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let rows = read(&path);
        if cut >= marker + 512 {
            // One zero block is an end-of-archive marker (GNU tar reads such
            // an archive too): every member before it is whole.
            assert_eq!(rows.len(), 4, "cut at {cut}: {rows:#?}");
            assert!(rows.iter().all(is_whole), "cut at {cut}");
        } else {
            assert_truncation_reported(&rows, &format!("cut at byte {cut}"));
        }
    }
}

#[test]
fn a_cut_gzip_stream_and_an_empty_file_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = shard_bytes();
    let gz = gzip(&bytes);
    for cut in [10, gz.len() / 2, gz.len() - 4] {
        let rows = read(&write(dir.path(), "cut.tar.gz", &gz[..cut]));
        assert_truncation_reported(&rows, &format!("gzip cut at {cut}"));
    }
    for name in ["zero.tar", "zero.tar.gz"] {
        let rows = read(&write(dir.path(), name, &[]));
        assert_eq!(rows.len(), 1, "{name}: {rows:#?}");
        assert!(rows[0].key.is_empty() && rows[0].error.is_some());
    }
}

#[test]
fn gzip_files_of_several_members_read_whole() {
    // bgzip and `cat a.gz b.gz` write several gzip members: all are the file.
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = shard_bytes();
    let half = bytes.len() / 2;
    let mut two = gzip(&bytes[..half]);
    two.extend(gzip(&bytes[half..]));
    let rows = read(&write(dir.path(), "two.tar.gz", &two));
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(rows.iter().all(is_whole));
}

#[test]
fn the_cifar10_shards_read_whole() {
    // Written by webdataset's ShardWriter (Python's tarfile underneath).
    let dir = shared_data().join("cifar10-wds");
    let path = dir.join("test-0000.tar.gz");
    let rows = read(&path);
    assert_eq!(rows.len(), 10_000);
    let bad: Vec<&RawSample> = rows.iter().filter(|s| s.error.is_some()).collect();
    assert!(bad.is_empty(), "{:#?}", &bad[..bad.len().min(3)]);
    assert!(rows
        .iter()
        .all(|s| s.image.is_some() && s.class.is_some() && !s.key.is_empty()));
}
