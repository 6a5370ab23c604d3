//! Undecoded samples read in file order: webdataset members grouped by key, or
//! the rows of a caption list. Nothing here decodes images, so resuming can skip
//! samples cheaply.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::source::DataSource;

/// Members above this size are refused (a sample, not a dataset).
const MAX_MEMBER_BYTES: u64 = 64 << 20;

const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "ppm", "pgm", "pnm",
];

/// One sample as stored, or the reason it is unusable.
#[derive(Clone, Debug, Default)]
pub struct RawSample {
    pub key: String,
    /// `shard.tar.gz:key` or `list.jsonl:line N`, for messages.
    pub origin: String,
    pub image: Option<(String, Vec<u8>)>,
    /// Where to read the image (caption lists).
    pub image_path: Option<PathBuf>,
    pub caption: Option<String>,
    pub class: Option<String>,
    pub error: Option<String>,
}

impl RawSample {
    fn failed(origin: String, error: impl Into<String>) -> Self {
        Self {
            origin,
            error: Some(error.into()),
            ..Self::default()
        }
    }
}

/// All raw samples of one source, in order. A source that breaks part way yields
/// what it read and then one failed sample naming the cause (with an empty
/// key); a shard's sample that was being read when it broke, or that ended
/// right before the break, is failed too, since members of it may be cut or
/// lost. A shard breaks where it is corrupt, and where it ends without its
/// end-of-archive marker (a truncated file, even one cut between two members).
pub fn read_source(source: &DataSource, sink: &mut dyn FnMut(RawSample) -> bool) {
    match source {
        DataSource::Shard(p) => read_shard(p, Bodies::Read, sink),
        DataSource::Jsonl(p) => read_jsonl(p, sink),
        DataSource::Csv(p) => read_csv(p, sink),
    }
}

/// webdataset convention: the key is the member path up to the first '.' of its
/// file name; consecutive members with one key form a sample.
fn split_member(path: &str) -> (String, String) {
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    match name.find('.') {
        Some(i) => (format!("{dir}{}", &name[..i]), name[i + 1..].to_lowercase()),
        None => (path.to_string(), String::new()),
    }
}

/// Notes whether the tar reader ran into the end of the shard's file. The `tar` crate ends its entries both at the
/// first all-zero header block (the end-of-archive marker every writer puts
/// there) and at end of file on a header boundary, which a shard cut short
/// between two members also meets; only this tells the two apart.
struct EndWatch<R> {
    inner: R,
    hit_eof: bool,
}

impl<R: Read> Read for EndWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(n)
    }
}

/// Why the samples of a shard that breaks part way stop: given to the sample
/// being read when it broke (its members may be cut or missing), then to the
/// shard itself (an error row with an empty key).
fn broken_shard(
    shard: &str,
    current: Option<RawSample>,
    cause: &str,
    sink: &mut dyn FnMut(RawSample) -> bool,
) {
    if let Some(mut s) = current {
        if s.error.is_none() {
            s.error = Some(format!(
                "the shard breaks in or right after this sample, which may have lost members: {cause}"
            ));
        }
        if !sink(s) {
            return;
        }
    }
    sink(RawSample::failed(shard.to_string(), cause));
}

impl<R> EndWatch<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hit_eof: false,
        }
    }
}

impl Seek for EndWatch<std::io::BufReader<std::fs::File>> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        match pos {
            // Past a body: within the buffer where it can, for small members
            // (a plain seek would drop the buffer and read it again).
            SeekFrom::Current(n) => {
                self.inner.seek_relative(n)?;
                self.inner.stream_position()
            }
            other => self.inner.seek(other),
        }
    }
}

/// Whether a shard's member bodies are read ([`read_source`]) or only passed
/// over ([`count_source`], which needs the samples and their errors, not
/// their bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bodies {
    Read,
    Skip,
}

fn read_shard(path: &Path, bodies: Bodies, sink: &mut dyn FnMut(RawSample) -> bool) {
    let shard = path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            sink(RawSample::failed(shard, format!("cannot open shard: {e}")));
            return;
        }
    };
    let gzipped = {
        let name = shard.to_lowercase();
        name.ends_with(".gz") || name.ends_with(".tgz")
    };
    if gzipped {
        // Every gzip member, as gzip itself reads a file (bgzip and
        // concatenated files have several).
        let reader = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        let mut archive = tar::Archive::new(EndWatch::new(reader));
        let Some((current, members)) = walk_shard(&shard, archive.entries(), bodies, sink) else {
            return;
        };
        let mut rest = archive.into_inner();
        end_shard(&shard, current, members, &mut rest, true, sink);
    } else {
        let mut archive = tar::Archive::new(EndWatch::new(std::io::BufReader::new(file)));
        // A plain shard can be seeked through when the bodies are not wanted:
        // only its headers are read. The samples and errors are the same, since
        // a shard cut inside a body breaks at the next header either way.
        let entries = match bodies {
            Bodies::Read => archive.entries(),
            Bodies::Skip => archive.entries_with_seek(),
        };
        let Some((current, members)) = walk_shard(&shard, entries, bodies, sink) else {
            return;
        };
        let mut rest = archive.into_inner();
        end_shard(&shard, current, members, &mut rest, false, sink);
    }
}

/// The members of a shard grouped into samples, passed to `sink` as they
/// complete. Returns the sample still open at the end of the entries and the
/// number of members, or `None` when the shard broke (already reported) or
/// `sink` asked to stop.
fn walk_shard<R: Read>(
    shard: &str,
    entries: std::io::Result<tar::Entries<'_, EndWatch<R>>>,
    bodies: Bodies,
    sink: &mut dyn FnMut(RawSample) -> bool,
) -> Option<(Option<RawSample>, usize)> {
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            sink(RawSample::failed(
                shard.to_string(),
                format!("not a tar archive: {e}"),
            ));
            return None;
        }
    };
    let mut current: Option<RawSample> = None;
    let mut members = 0usize;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let cause = format!("shard is corrupt or truncated: {e}");
                broken_shard(shard, current.take(), &cause, sink);
                return None;
            }
        };
        members += 1;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let member = match entry.path() {
            Ok(p) => p.to_string_lossy().to_string(),
            Err(_) => continue,
        };
        let (key, ext) = split_member(&member);
        if current.as_ref().is_some_and(|c| c.key != key) {
            if let Some(s) = current.take() {
                if !sink(s) {
                    return None;
                }
            }
        }
        let sample = current.get_or_insert_with(|| RawSample {
            key: key.clone(),
            origin: format!("{shard}:{key}"),
            ..RawSample::default()
        });
        let size = entry.header().size().unwrap_or(u64::MAX);
        if size > MAX_MEMBER_BYTES {
            sample.error = Some(format!(
                "member {member} is {size} bytes (limit {MAX_MEMBER_BYTES})"
            ));
            continue;
        }
        let is_image = IMAGE_EXTENSIONS.contains(&ext.as_str());
        if !(is_image || ext == "txt" || ext == "cls") || bodies == Bodies::Skip {
            continue;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        if let Err(e) = entry.read_to_end(&mut bytes) {
            sample.error = Some(format!("cannot read member {member}: {e}"));
            let cause = format!("shard is corrupt or truncated: {e}");
            broken_shard(shard, current.take(), &cause, sink);
            return None;
        }
        if is_image {
            sample.image = Some((member, bytes));
        } else {
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            if ext == "txt" {
                sample.caption = Some(text);
            } else {
                sample.class = Some(text);
            }
        }
    }
    Some((current, members))
}

/// After the last entry of a shard: reports a shard that ended without its
/// end-of-archive marker, reads a gzip trailer, and passes the last sample.
fn end_shard<R: Read>(
    shard: &str,
    mut current: Option<RawSample>,
    members: usize,
    rest: &mut EndWatch<R>,
    gzipped: bool,
    sink: &mut dyn FnMut(RawSample) -> bool,
) {
    if rest.hit_eof {
        // The entries ended at the end of the file, not at the end-of-archive
        // marker: the shard was cut between two members (or is empty), and
        // the last sample may be missing members that came after the cut.
        let cause = if members == 0 {
            "shard is empty or truncated: it holds no tar header nor the end-of-archive marker"
                .to_string()
        } else {
            format!(
                "shard is truncated: it ends after {members} members without the \
                 end-of-archive marker (zero blocks)"
            )
        };
        broken_shard(shard, current.take(), &cause, sink);
        return;
    }
    if gzipped {
        // The gzip trailer (the checksum of all the data and its length)
        // follows the marker and the padding: read it, so a gzip file cut or
        // damaged there is reported. Every member was read whole, so the
        // samples stand; the shard's error row says the file is damaged.
        let drained = std::io::copy(rest, &mut std::io::sink());
        if let Some(s) = current.take() {
            if !sink(s) {
                return;
            }
        }
        if let Err(e) = drained {
            sink(RawSample::failed(
                shard.to_string(),
                format!("shard is corrupt or truncated after its last member (gzip trailer): {e}"),
            ));
        }
        return;
    }
    if let Some(s) = current.take() {
        sink(s);
    }
}

const IMAGE_KEYS: &[&str] = &["image", "file", "filepath", "path"];
const CAPTION_KEYS: &[&str] = &["caption", "text", "title"];

fn list_sample(list: &Path, line: usize, image: Option<&str>, caption: Option<&str>) -> RawSample {
    let origin = format!("{}:line {line}", list.display());
    let Some(image) = image.filter(|s| !s.is_empty()) else {
        return RawSample::failed(origin, "no image path");
    };
    let base = list.parent().unwrap_or(Path::new("."));
    RawSample {
        key: image.to_string(),
        origin,
        image_path: Some(base.join(image)),
        caption: caption.map(|c| c.trim().to_string()),
        ..RawSample::default()
    }
}

fn read_jsonl(path: &Path, sink: &mut dyn FnMut(RawSample) -> bool) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            sink(RawSample::failed(
                path.display().to_string(),
                format!("cannot read: {e}"),
            ));
            return;
        }
    };
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let sample = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                let field = |keys: &[&str]| {
                    keys.iter()
                        .find_map(|k| v.get(*k)?.as_str().map(str::to_string))
                };
                list_sample(
                    path,
                    i + 1,
                    field(IMAGE_KEYS).as_deref(),
                    field(CAPTION_KEYS).as_deref(),
                )
            }
            Err(e) => RawSample::failed(
                format!("{}:line {}", path.display(), i + 1),
                format!("invalid JSON: {e}"),
            ),
        };
        if !sink(sample) {
            return;
        }
    }
}

fn read_csv(path: &Path, sink: &mut dyn FnMut(RawSample) -> bool) {
    let mut reader = match csv::ReaderBuilder::new().flexible(true).from_path(path) {
        Ok(r) => r,
        Err(e) => {
            sink(RawSample::failed(
                path.display().to_string(),
                format!("cannot read: {e}"),
            ));
            return;
        }
    };
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_lowercase()).collect(),
        Err(e) => {
            sink(RawSample::failed(
                path.display().to_string(),
                format!("bad CSV header: {e}"),
            ));
            return;
        }
    };
    let column = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| headers.iter().position(|h| h == k))
    };
    let (Some(image_col), caption_col) = (column(IMAGE_KEYS), column(CAPTION_KEYS)) else {
        sink(RawSample::failed(
            path.display().to_string(),
            "the CSV header names no image column (image, file, filepath or path)",
        ));
        return;
    };
    for (i, record) in reader.records().enumerate() {
        let sample = match record {
            Ok(r) => list_sample(
                path,
                i + 2,
                r.get(image_col),
                caption_col.and_then(|c| r.get(c)),
            ),
            Err(e) => RawSample::failed(
                format!("{}:line {}", path.display(), i + 2),
                format!("bad CSV row: {e}"),
            ),
        };
        if !sink(sample) {
            return;
        }
    }
}

/// Samples of one source as [`read_source`] gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCount {
    /// Samples as stored, failed ones included.
    pub stored: u64,
    /// Samples without an error.
    pub usable: u64,
}

/// Counts the samples [`read_source`] gives for `source`, the same ones with
/// the same errors, without keeping any member's bytes: a plain `.tar` shard
/// is seeked through (only its headers are read); a gzipped one still has to
/// be decompressed whole, and a caption list read whole.
pub fn count_source(source: &DataSource) -> SourceCount {
    let mut count = SourceCount::default();
    let mut tally = |raw: RawSample| {
        count.stored += 1;
        count.usable += raw.error.is_none() as u64;
        true
    };
    match source {
        DataSource::Shard(p) => read_shard(p, Bodies::Skip, &mut tally),
        other => read_source(other, &mut tally),
    }
    count
}

/// Usable samples in `sources` (one pass, nothing decoded), e.g. to turn
/// `--epochs` into steps.
pub fn count_samples(sources: &[DataSource]) -> u64 {
    sources.iter().map(|s| count_source(s).usable).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Samples of an image, a caption and a member of another kind (whose body
    /// is never read), sizes not multiples of 512.
    fn shard_bytes() -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        for i in 0..4u8 {
            let image = vec![i + 1; 700 + 300 * i as usize];
            for (name, data) in [
                (format!("s{i}.jpg"), image),
                (format!("s{i}.json"), vec![b'{'; 600]),
                (format!("s{i}.txt"), format!("caption {i}").into_bytes()),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                t.append_data(&mut h, name, &data[..]).unwrap();
            }
        }
        t.into_inner().unwrap()
    }

    fn read_count(source: &DataSource) -> SourceCount {
        let mut count = SourceCount::default();
        read_source(source, &mut |raw| {
            count.stored += 1;
            count.usable += raw.error.is_none() as u64;
            true
        });
        count
    }

    /// Counting (bodies skipped, plain shards seeked through) gives what
    /// reading gives, for whole shards and ones cut or damaged anywhere.
    #[test]
    fn counting_agrees_with_reading_whole_cut_and_damaged_shards() {
        let dir = tempfile::tempdir().unwrap();
        let whole = shard_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&whole).unwrap();
        let gz = gz.finish().unwrap();
        let mut checked = 0;
        for (name, bytes) in [("s.tar", &whole), ("s.tar.gz", &gz)] {
            let path = dir.path().join(name);
            let source = DataSource::Shard(path.clone());
            // Every 5th length: 5 and 512 are coprime, so the cuts fall on
            // every offset within a header or a body block.
            let mut variants: Vec<Vec<u8>> = (0..=bytes.len())
                .step_by(5)
                .map(|cut| bytes[..cut].to_vec())
                .collect();
            for at in (0..bytes.len()).step_by(37) {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x5a;
                variants.push(damaged);
            }
            for v in &variants {
                std::fs::write(&path, v).unwrap();
                assert_eq!(
                    count_source(&source),
                    read_count(&source),
                    "{name} of {} bytes",
                    v.len()
                );
                checked += 1;
            }
        }
        assert!(checked > 3_000, "{checked}");
        std::fs::write(dir.path().join("s.tar"), &whole).unwrap();
        let whole = count_source(&DataSource::Shard(dir.path().join("s.tar")));
        assert_eq!(
            whole,
            SourceCount {
                stored: 4,
                usable: 4
            }
        );
    }

    #[test]
    fn keys_end_at_the_first_dot_of_the_name() {
        assert_eq!(
            split_member("a/b.c/x_1.seg.png"),
            ("a/b.c/x_1".into(), "seg.png".into())
        );
        assert_eq!(split_member("x_1.JPG"), ("x_1".into(), "jpg".into()));
    }
}

/// Lets the `fuzz_` harnesses see each allocation's size.
#[cfg(test)]
#[global_allocator]
static FUZZ_ALLOC: seer_testkit::fuzz_mutator::PeakAlloc = seer_testkit::fuzz_mutator::PeakAlloc;

/// Mutation fuzzing of the dataset readers: webdataset shards (`.tar` and
/// `.tar.gz`, read and counted), JSONL and CSV caption lists, each input under
/// `catch_unwind`; findings under `/tmp/fuzz-data/shards/`. Seeds are the first
/// members of a shared cifar10-wds shard (when present) and shards and lists
/// built here. Run (about 2 minutes in release):
/// `cargo test --release -q -p seer-data -- --ignored fuzz_`
#[cfg(test)]
mod fuzz {
    use super::*;
    use seer_testkit::fuzz_mutator::*;
    use std::io::Write;

    const SEED: u64 = 0x7A2_5EED;
    const ITERATIONS: usize = 30_000;

    fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            t.append_data(&mut h, name, &data[..]).unwrap();
        }
        t.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn tar_seeds() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // The first 8 members of a real shard.
        let shard = seer_testkit::shared_data().join("cifar10-wds/test-0000.tar.gz");
        if let Ok(f) = std::fs::File::open(shard) {
            let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
            let members: Vec<(String, Vec<u8>)> = a
                .entries()
                .unwrap()
                .take(8)
                .map(|e| {
                    let mut e = e.unwrap();
                    let name = e.path().unwrap().display().to_string();
                    let mut b = Vec::new();
                    e.read_to_end(&mut b).unwrap();
                    (name, b)
                })
                .collect();
            out.push(tar_of(&members));
        }
        let built: Vec<(String, Vec<u8>)> = (0..3)
            .flat_map(|i| {
                [
                    (format!("dir/s{i}.png"), vec![0x89; 300 + 200 * i]),
                    (format!("dir/s{i}.txt"), format!("caption {i}").into_bytes()),
                    (format!("dir/s{i}.cls"), format!("{i}").into_bytes()),
                    (format!("dir/s{i}.json"), b"{}".to_vec()),
                ]
            })
            .collect();
        out.push(tar_of(&built));
        out.push(tar_of(&[]));
        out
    }

    /// A tar header field set to something hostile: the size (octal or
    /// base-256), the type flag, the name; the checksum recomputed mostly,
    /// so the reader gets past it.
    fn mutate_tar_header(buf: &mut [u8], rng: &mut Rng) {
        let headers: Vec<usize> = (0..buf.len() / 512)
            .map(|i| i * 512)
            .filter(|&o| buf.get(o + 257..o + 262) == Some(b"ustar"))
            .collect();
        if headers.is_empty() {
            return;
        }
        let h = headers[rng.below(headers.len())];
        match rng.below(4) {
            0 => {
                let sizes: [&[u8]; 6] = [
                    b"77777777777\0",
                    b"00000000000\0",
                    b"00000001000\0",
                    b"\x80\0\0\0\x7f\xff\xff\xff\xff\xff\xff\xff",
                    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                    b"99999999999\0",
                ];
                buf[h + 124..h + 136].copy_from_slice(sizes[rng.below(sizes.len())]);
            }
            1 => buf[h + 156] = b"0125Lgx7K\0"[rng.below(10)],
            2 => {
                let names: [&[u8]; 4] = [b"", b".", b"../../x.jpg", b"a.b.c.d.jpg"];
                let n = names[rng.below(names.len())];
                buf[h..h + 100].fill(0);
                buf[h..h + n.len()].copy_from_slice(n);
            }
            _ => buf[h + 345] = b'/', // prefix field
        }
        if !rng.chance(8) {
            buf[h + 148..h + 156].fill(b' ');
            let sum: u32 = buf[h..h + 512].iter().map(|&b| b as u32).sum();
            let field = format!("{sum:06o}\0 ");
            buf[h + 148..h + 156].copy_from_slice(field.as_bytes());
        }
    }

    fn list_seeds() -> Vec<Vec<u8>> {
        vec![
            b"{\"image\": \"a.jpg\", \"caption\": \"a cat\"}\n{\"file\": \"b/c.png\", \"text\": \"x\"}\n\n{\"path\": 3}\n".to_vec(),
            b"image,caption\na.jpg,a cat\n\"b,c.png\",\"say \"\"hi\"\"\"\nd.jpg\n".to_vec(),
        ]
    }

    fn read_all(source: &DataSource) -> std::result::Result<(), String> {
        let mut failed = None;
        let mut n = 0u64;
        read_source(source, &mut |raw| {
            n += 1;
            if let Some(e) = &raw.error {
                // The rule: a failed sample names its file.
                let file = source.path().file_name().unwrap().to_string_lossy();
                assert!(
                    raw.origin.contains(&*file),
                    "origin without the file: {raw:?}"
                );
                failed = Some(e.clone());
            }
            n < 10_000
        });
        let counted = count_source(source);
        if n < 10_000 {
            // Counting must give the samples reading gives.
            assert_eq!(counted.stored, n, "count_source disagrees with read_source");
        }
        failed.map_or(Ok(()), Err)
    }

    #[test]
    #[ignore = "fuzz harness: cargo test --release -p seer-data -- --ignored fuzz_"]
    fn fuzz_shards_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let tars = tar_seeds();
        let lists = list_seeds();
        let mut rng = Rng::new(SEED);
        let mut found = Findings::new("shards");
        quiet_panics(|| {
            for iter in 0..ITERATIONS {
                let kind = rng.below(5);
                let (mut input, other) = if kind < 3 {
                    (
                        tars[rng.below(tars.len())].clone(),
                        tars[rng.below(tars.len())].clone(),
                    )
                } else {
                    (lists[kind - 3].clone(), lists[rng.below(2)].clone())
                };
                if kind < 3 && rng.chance(2) {
                    mutate_tar_header(&mut input, &mut rng);
                }
                for _ in 0..1 + rng.below(3) {
                    mutate_once(&mut input, &other, &mut rng);
                }
                let (name, bytes) = match kind {
                    0 => ("s.tar", input),
                    // Mutated tar, then gzipped; or a gzip file mutated.
                    1 => ("s.tar.gz", gzip(&input)),
                    2 => {
                        let mut gz = gzip(&tars[rng.below(tars.len())]);
                        for _ in 0..1 + rng.below(2) {
                            mutate_once(&mut gz, &[], &mut rng);
                        }
                        ("s.tgz", gz)
                    }
                    3 => ("l.jsonl", input),
                    _ => ("l.csv", input),
                };
                let path = dir.path().join(name);
                std::fs::write(&path, &bytes).unwrap();
                let source = match kind {
                    0..=2 => DataSource::Shard(path),
                    3 => DataSource::Jsonl(path),
                    _ => DataSource::Csv(path),
                };
                found.run(iter, &bytes, || read_all(&source));
            }
        });
        found.finish("shards", ITERATIONS);
    }
}
