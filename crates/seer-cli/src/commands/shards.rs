//! `seer embed --shards`: webdataset shards to the clip-retrieval layout, one
//! worker's share at a time (Slurm job arrays, Kubernetes Indexed Jobs).
//!
//! Input shard `i` of the expanded list goes to worker `i % num_shards` and
//! becomes output shard `i` (`img_emb/img_emb_{i}.npy`, `metadata/…`,
//! `errors/…`; see `seer_index::exchange::write_shard`). An output shard is
//! written whole or not at all, so a killed or retried worker re-runs only the
//! shards it had not finished, and two workers that both write a shard write
//! the same files. Broken samples are data, not failures: they go to the
//! errors file, and the exit status is 0 once every shard of the share is
//! written.
//!
//! Which input an output shard came from is recorded beside it
//! (`inputs/input_{i}.json`, see [`InputRecord`]), so that a finished shard is
//! skipped only when it was written from the input now at its position: a
//! folder of shards that gained or lost one shifts the positions, and a rerun
//! then refuses to mix two lists instead of skipping the wrong inputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context;
use seer_data::{read_source, DataSource, RawSample};
use seer_engine::{EmbedOptions, EngineError, ImageEncoder};
use seer_index::exchange::{shard_complete, write_shard, ShardFailure, ShardRow};
use seer_index::npy::Dtype;

use crate::common::ModelArgs;
use crate::output::{progress, Failures};

#[derive(clap::Args, Debug, Clone)]
pub struct ShardArgs {
    /// Webdataset shards to embed into `--out DIR` in the clip-retrieval layout:
    /// a brace range (`data/{00000..00999}.tar`), a folder of shards or one file.
    #[arg(long, value_name = "SPEC", conflicts_with_all = ["image", "text", "text_file", "features"])]
    pub shards: Option<String>,
    /// This worker's share: the input shards `i` with `i % num-shards ==
    /// shard-index`. Default: SLURM_ARRAY_TASK_ID (less SLURM_ARRAY_TASK_MIN,
    /// over SLURM_ARRAY_TASK_STEP), else JOB_COMPLETION_INDEX, else 0.
    #[arg(long, value_name = "I", requires = "shards")]
    pub shard_index: Option<usize>,
    /// How many workers share the shards. Default: SLURM_ARRAY_TASK_COUNT, else 1
    /// (with JOB_COMPLETION_INDEX, give the Job's completions).
    #[arg(long, value_name = "N", requires = "shards")]
    pub num_shards: Option<usize>,
    /// Element type of the embeddings written with --shards.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16"], requires = "shards")]
    pub dtype: String,
}

/// Which share of the shards this worker takes: `(index, count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Worker {
    pub index: usize,
    pub count: usize,
}

impl Worker {
    /// From the flags, else the scheduler's variables (`env` looks one up).
    pub fn resolve(
        index: Option<usize>,
        count: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Worker> {
        let number = |name: &str| -> anyhow::Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{name}={v:?} is not a whole number"))
                })
                .transpose()
        };
        let slurm_index = match number("SLURM_ARRAY_TASK_ID")? {
            Some(id) => {
                let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
                anyhow::ensure!(
                    id >= min,
                    "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                );
                Some((id - min) / step)
            }
            None => None,
        };
        let k8s_index = number("JOB_COMPLETION_INDEX")?;
        let count = match count {
            Some(n) => n,
            None => match (slurm_index, k8s_index, index) {
                (Some(_), ..) => number("SLURM_ARRAY_TASK_COUNT")?
                    .context("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give --num-shards")?,
                (None, Some(_), None) => anyhow::bail!(
                    "JOB_COMPLETION_INDEX is set: give --num-shards (the Job's completions)"
                ),
                (None, _, Some(_)) => anyhow::bail!("--shard-index needs --num-shards"),
                (None, None, None) => 1,
            },
        };
        let index = index.or(slurm_index).or(k8s_index).unwrap_or(0);
        anyhow::ensure!(count > 0, "--num-shards must be at least 1");
        anyhow::ensure!(
            index < count,
            "shard index {index} is not below the number of workers {count}"
        );
        Ok(Worker { index, count })
    }

    /// The positions in `0..shards` this worker takes.
    pub fn share(self, shards: usize) -> impl Iterator<Item = usize> {
        (self.index..shards).step_by(self.count)
    }
}

/// Which input an output shard was written from, in `inputs/input_{i}.json`
/// of the output folder (written before the shard's own files, so every
/// finished shard has one; folders written before seer kept it have none).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
struct InputRecord {
    /// The input's path as given (what its rows' `image_path` starts with).
    path: String,
    /// Its real path, where it could be resolved.
    canonical: Option<String>,
    /// Its file name and size.
    name: String,
    bytes: u64,
}

impl InputRecord {
    fn of(input: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(input)
            .with_context(|| format!("{}: cannot read the shard", input.display()))?;
        Ok(Self {
            path: input.display().to_string(),
            canonical: std::fs::canonicalize(input)
                .ok()
                .map(|p| p.display().to_string()),
            name: input
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            bytes: meta.len(),
        })
    }

    /// Whether `self` and `other` name the same input: the same real path
    /// (the same file, however the path was written), or the same size, file
    /// name and folder name (the same shard, its collection moved or mounted
    /// elsewhere; the folder tells `a/000.tar` from `b/000.tar`).
    fn same_input(&self, other: &Self) -> bool {
        (self.canonical.is_some() && self.canonical == other.canonical)
            || (self.name == other.name
                && self.bytes == other.bytes
                && self.folder() == other.folder())
    }

    /// The name of the folder the input is in (from its real path).
    fn folder(&self) -> Option<String> {
        let real = Path::new(self.canonical.as_deref()?);
        Some(real.parent()?.file_name()?.to_string_lossy().to_string())
    }

    fn file(out: &Path, number: usize) -> PathBuf {
        out.join(format!("inputs/input_{number}.json"))
    }

    /// The record of output shard `number`, if there is one.
    fn read(out: &Path, number: usize) -> anyhow::Result<Option<Self>> {
        let path = Self::file(out, number);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
        };
        let record = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a record of the input this output shard was written from",
                path.display()
            )
        })?;
        Ok(Some(record))
    }

    /// Writes the record of output shard `number` (to a temporary name, then
    /// renamed: a reader sees it whole or not at all). A failed write (a full
    /// disk) removes its temporary, and the error names the record itself.
    /// Synced like the shard's files, which a power loss must not leave
    /// without their record.
    fn write(&self, out: &Path, number: usize) -> anyhow::Result<()> {
        let path = Self::file(out, number);
        let dir = path.parent().expect("records live in a folder");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        let text = serde_json::to_string(self)? + "\n";
        crate::output::write_atomically(&path, text.as_bytes())
    }
}

/// The finished output shards of `mine` that were written from the input now
/// at their position (to skip), or an error naming the first that was not:
/// the input list changed since, and writing on would mix the two lists.
fn finished_shards(out: &Path, shards: &[PathBuf], mine: &[usize]) -> anyhow::Result<Vec<usize>> {
    let mut finished = Vec::new();
    let mut changed = Vec::new();
    for &n in mine {
        if !shard_complete(out, n) {
            continue;
        }
        match InputRecord::read(out, n)? {
            Some(was) => {
                let now = InputRecord::of(&shards[n])?;
                if was.same_input(&now) {
                    finished.push(n);
                } else {
                    changed.push((n, was, now));
                }
            }
            // Written before seer recorded inputs: taken as it is.
            None => finished.push(n),
        }
    }
    if let Some((n, was, now)) = changed.first() {
        let others = match changed.len() {
            1 => String::new(),
            k => format!(" ({} finished output shards of this worker differ)", k),
        };
        anyhow::bail!(
            "{}: output shard {n} was written from {} ({} bytes), but input shard {n} is now {} \
             ({} bytes){others}: the input list changed since that run. Embed into a new --out \
             folder, or remove {} to start again",
            out.display(),
            was.path,
            was.bytes,
            now.path,
            now.bytes,
            out.display()
        );
    }
    Ok(finished)
}

/// What became of one output shard (a `--json` line).
#[derive(serde::Serialize)]
struct ShardReport<'a> {
    shard: &'a str,
    number: usize,
    /// `written`, or `skipped` (complete from an earlier run).
    status: &'static str,
    rows: Option<usize>,
    errors: Option<usize>,
}

pub fn run(
    args: &ShardArgs,
    spec: &str,
    model: &ModelArgs,
    out: Option<&Path>,
    normalize: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let out = out.context("--shards writes a folder: give --out DIR")?;
    anyhow::ensure!(
        !out.is_file(),
        "{}: --out with --shards is a folder, and this is a file",
        out.display()
    );
    let worker = Worker::resolve(args.shard_index, args.num_shards, |k| std::env::var(k).ok())?;
    let sources = DataSource::parse(spec)?;
    let shards: Vec<PathBuf> = sources
        .into_iter()
        .map(|s| match s {
            DataSource::Shard(p) => Ok(p),
            other => anyhow::bail!(
                "{}: --shards takes webdataset .tar/.tar.gz shards",
                other.path().display()
            ),
        })
        .collect::<anyhow::Result<_>>()?;
    let dtype = if args.dtype == "f16" {
        Dtype::F16
    } else {
        Dtype::F32
    };
    let mine: Vec<usize> = worker.share(shards.len()).collect();
    let finished: std::collections::HashSet<usize> =
        finished_shards(out, &shards, &mine)?.into_iter().collect();
    let todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|n| !finished.contains(n))
        .collect();
    let mut stdout = std::io::stdout().lock();
    // A reader that closes stdout (`| head -1`) must not stop the work: every
    // shard is still written, and the exit status says so. The lines are
    // dropped from then on; any other failure to print (a full disk) is an
    // error.
    let mut stdout_open = true;
    let mut report = |r: ShardReport| -> anyhow::Result<()> {
        if json && stdout_open {
            match writeln!(stdout, "{}", serde_json::to_string(&r)?) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => stdout_open = false,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    };
    for &n in mine.iter().filter(|n| finished.contains(n)) {
        report(ShardReport {
            shard: &shards[n].display().to_string(),
            number: n,
            status: "skipped",
            rows: None,
            errors: None,
        })?;
    }
    diag!(
        "worker {} of {}: {} of {} shards are ours, {} already written",
        worker.index,
        worker.count,
        mine.len(),
        shards.len(),
        mine.len() - todo.len()
    );
    if todo.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // Loaded only when there is work: a finished worker that is retried exits
    // at once.
    // The image tower alone: no tokenizer is needed (nor fetched).
    let loaded = model.load_images()?;
    let encoder = loaded.image()?;
    let options = model.embed_options(normalize)?;
    let pb = progress(todo.len(), "shards");
    let mut failures = Failures::default();
    let mut embedded = 0;
    for n in todo {
        let shard = &shards[n];
        let name = shard.display().to_string();
        let record = InputRecord::of(shard)?;
        let result = embed_shard(encoder, shard, &options)?;
        for f in &result.failures {
            failures.report(&pb, &f.origin, &f.error);
        }
        // Before the shard's files: a shard is finished when its metadata
        // appears, and by then its record is in place.
        record.write(out, n)?;
        write_shard(
            out,
            n,
            &result.rows,
            &result.vectors,
            encoder.embed_dim(),
            dtype,
            &result.failures,
        )?;
        embedded += result.rows.len();
        pb.suspend(|| {
            report(ShardReport {
                shard: &name,
                number: n,
                status: "written",
                rows: Some(result.rows.len()),
                errors: Some(result.failures.len()),
            })
        })?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    failures.summary(embedded, "samples");
    Ok(ExitCode::SUCCESS)
}

/// One input shard's embeddings, metadata and failures, in shard order.
struct ShardResult {
    rows: Vec<ShardRow>,
    vectors: Vec<Vec<f32>>,
    failures: Vec<ShardFailure>,
}

/// Samples handed from the reading thread to the model at a time.
const CHUNK: usize = 256;

/// Reads `shard` on a thread of its own, a chunk ahead of the model, and
/// embeds its images. Only a model failure is an error; a bad sample, or a
/// shard that breaks part way, is recorded in the result.
fn embed_shard(
    encoder: &dyn ImageEncoder,
    shard: &Path,
    options: &EmbedOptions,
) -> anyhow::Result<ShardResult> {
    let shard_name = shard.display().to_string();
    let mut result = ShardResult {
        rows: Vec::new(),
        vectors: Vec::new(),
        failures: Vec::new(),
    };
    let (tx, rx) = mpsc::sync_channel::<Vec<RawSample>>(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            let mut chunk = Vec::with_capacity(CHUNK);
            let source = DataSource::Shard(shard.to_path_buf());
            read_source(&source, &mut |sample| {
                chunk.push(sample);
                if chunk.len() < CHUNK {
                    return true;
                }
                tx.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                    .is_ok()
            });
            if !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
        });
        for chunk in rx {
            let prepare = |s: &RawSample| -> seer_engine::Result<(Vec<f32>, ())> {
                if let Some(e) = &s.error {
                    return Err(EngineError::Invalid(e.clone()));
                }
                let (member, bytes) = s
                    .image
                    .as_ref()
                    .ok_or_else(|| EngineError::Invalid("the sample has no image".into()))?;
                let decoded = seer_image::decode_bytes_full(bytes, member, &options.limits)?;
                Ok((encoder.preprocess(&decoded), ()))
            };
            encoder
                .embed_prepared(&chunk, options, prepare, |i, outcome| {
                    let s = &chunk[i];
                    match outcome {
                        Ok((vector, ())) => {
                            let member = s.image.as_ref().map_or("", |(m, _)| m.as_str());
                            result.rows.push(ShardRow {
                                key: s.key.clone(),
                                image_path: format!("{shard_name}/{member}"),
                                caption: s.caption.clone(),
                            });
                            result.vectors.push(vector);
                        }
                        Err(e) => result.failures.push(ShardFailure {
                            key: s.key.clone(),
                            origin: s.origin.clone(),
                            error: e.to_string(),
                        }),
                    }
                })
                .with_context(|| format!("{shard_name}: the model failed"))?;
        }
        Ok(())
    })?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_win_over_the_scheduler() {
        let w = Worker::resolve(Some(2), Some(5), env(&[("SLURM_ARRAY_TASK_ID", "4")])).unwrap();
        assert_eq!(w, Worker { index: 2, count: 5 });
    }

    #[test]
    fn slurm_arrays_count_from_their_minimum_and_step() {
        let vars = &[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let w = Worker::resolve(None, None, env(vars)).unwrap();
        assert_eq!(w, Worker { index: 3, count: 4 });
    }

    #[test]
    fn kubernetes_indexed_jobs_need_the_count() {
        let vars = &[("JOB_COMPLETION_INDEX", "3")];
        let err = Worker::resolve(None, None, env(vars)).unwrap_err();
        assert!(err.to_string().contains("--num-shards"), "{err}");
        let w = Worker::resolve(None, Some(8), env(vars)).unwrap();
        assert_eq!(w, Worker { index: 3, count: 8 });
    }

    #[test]
    fn alone_a_worker_takes_everything() {
        let w = Worker::resolve(None, None, env(&[])).unwrap();
        assert_eq!(w, Worker { index: 0, count: 1 });
        assert_eq!(w.share(3).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn bad_shares_are_refused() {
        assert!(Worker::resolve(Some(4), Some(4), env(&[])).is_err());
        assert!(Worker::resolve(Some(0), Some(0), env(&[])).is_err());
        assert!(Worker::resolve(Some(1), None, env(&[])).is_err());
        let bad = &[
            ("SLURM_ARRAY_TASK_ID", "x"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        assert!(Worker::resolve(None, None, env(bad)).is_err());
    }

    fn record(path: &str, bytes: u64) -> InputRecord {
        InputRecord {
            path: path.into(),
            canonical: Some(path.into()),
            name: Path::new(path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into(),
            bytes,
        }
    }

    #[test]
    fn an_input_is_known_by_its_real_path_or_its_name_size_and_folder() {
        let was = record("/data/laion/00001.tar", 10240);
        // The same file, grown or shrunk (a download completed): the same input.
        assert!(was.same_input(&record("/data/laion/00001.tar", 20480)));
        // The collection moved or mounted elsewhere.
        assert!(was.same_input(&record("/mnt/x/laion/00001.tar", 10240)));
        // Another shard of the list, or a namesake in another folder.
        assert!(!was.same_input(&record("/data/laion/00002.tar", 10240)));
        assert!(!was.same_input(&record("/data/other/00001.tar", 10240)));
        assert!(!was.same_input(&record("/mnt/x/laion/00001.tar", 512)));
    }

    #[test]
    fn shares_are_disjoint_and_cover_every_shard() {
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|i| Worker { index: i, count: 3 }.share(10))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }
}
