//! The streaming loader: a background thread reads raw samples (shard order and a
//! shuffle buffer drawn from the seed and epoch), decodes them in parallel, and
//! hands them over in a fixed order, so what is delivered depends only on the
//! configuration and the seed, never on threads or timing, and a run resumed
//! from a [`DataPosition`] sees exactly what it would have seen.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rayon::prelude::*;
use seer_image::{decode_bytes_full, decode_file_full, DecodeLimits, PreprocessConfig};
use serde::{Deserialize, Serialize};

use crate::augment::RandomResizedCrop;
use crate::error::{DataError, Result};
use crate::raw::{read_source, RawSample};
use crate::rng::Rng;
use crate::source::DataSource;

/// Class names and caption templates for samples labeled with a class index.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassPrompts {
    pub classes: Vec<String>,
    /// With `{}` where the class name goes.
    pub templates: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub sources: Vec<DataSource>,
    /// Evaluation preprocessing (and the crop size and normalisation for training).
    pub preprocess: PreprocessConfig,
    /// `None`: the exact evaluation preprocessing.
    pub augment: Option<RandomResizedCrop>,
    /// Samples in the shuffle buffer; 0 or 1 keeps file order (and source order).
    pub shuffle_buffer: usize,
    pub workers: usize,
    pub seed: u64,
    pub prompts: Option<ClassPrompts>,
    pub limits: DecodeLimits,
    /// Endless epochs (training) or one pass (evaluation).
    pub repeat: bool,
}

/// How far into the data a run is: raw samples of `epoch` consumed so far (bad
/// ones included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    pub epoch: u64,
    pub consumed: u64,
}

/// One decoded sample.
#[derive(Clone, Debug)]
pub struct Sample {
    pub key: String,
    pub origin: String,
    /// CHW, normalised, `3 * crop * crop` values.
    pub pixels: Vec<f32>,
    pub caption: String,
    pub class: Option<usize>,
}

/// Samples in columns, pixels back to back as a `(n, 3, S, S)` tensor wants them.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pixels: Vec<f32>,
    captions: Vec<String>,
    classes: Vec<Option<usize>>,
    keys: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.captions.len()
    }
    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }
    pub fn pixels(&self) -> &[f32] {
        &self.pixels
    }
    pub fn captions(&self) -> &[String] {
        &self.captions
    }
    pub fn classes(&self) -> &[Option<usize>] {
        &self.classes
    }
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
    fn push(&mut self, s: Sample) {
        self.pixels.extend_from_slice(&s.pixels);
        self.captions.push(s.caption);
        self.classes.push(s.class);
        self.keys.push(s.key);
    }
}

#[derive(Clone, Debug, Default)]
pub struct LoaderStats {
    pub delivered: u64,
    pub skipped: u64,
    /// The latest few problems, `origin: cause`.
    pub recent_errors: Vec<String>,
}

enum Message {
    Good {
        epoch: u64,
        index: u64,
        sample: Sample,
    },
    Bad {
        epoch: u64,
        index: u64,
        message: String,
    },
    /// A sample with a class index and no caption, while no class names were
    /// given: a matter of configuration, said once, not once per sample.
    Unlabelled {
        epoch: u64,
        index: u64,
        origin: String,
    },
    EpochEnd {
        epoch: u64,
        good: u64,
    },
    Failed(String),
}

pub struct Loader {
    rx: Option<Receiver<Message>>,
    worker: Option<JoinHandle<()>>,
    position: DataPosition,
    stats: LoaderStats,
    /// Samples of the current pass skipped, and how many of them for a class
    /// index without class names ([`Message::Unlabelled`]).
    pass_skipped: u64,
    pass_unlabelled: u64,
    /// Samples skipped as [`Message::Unlabelled`] in the whole run.
    unlabelled: u64,
    done: bool,
}

/// What to do about samples that carry a class index but no caption.
const UNLABELLED_HINT: &str =
    "no class names were given to make captions from: pass --classes (and --templates)";

impl Loader {
    pub fn new(config: LoaderConfig, start: DataPosition) -> Result<Self> {
        if config.sources.is_empty() {
            return Err(DataError::Invalid("no data sources".into()));
        }
        let (tx, rx) = sync_channel(1024);
        let worker = std::thread::Builder::new()
            .name("seer-data".into())
            .spawn(move || produce(config, start, tx))
            .map_err(DataError::Thread)?;
        Ok(Self {
            rx: Some(rx),
            worker: Some(worker),
            position: start,
            stats: LoaderStats::default(),
            pass_skipped: 0,
            pass_unlabelled: 0,
            unlabelled: 0,
            done: false,
        })
    }

    /// Up to `n` samples; `None` once a one-pass loader is exhausted.
    pub fn next_batch(&mut self, n: usize) -> Result<Option<Batch>> {
        let mut batch = Batch::default();
        while batch.len() < n && !self.done {
            let Some(msg) = self.rx.as_ref().and_then(|rx| rx.recv().ok()) else {
                self.done = true;
                break;
            };
            match msg {
                Message::Good {
                    epoch,
                    index,
                    sample,
                } => {
                    self.position = DataPosition {
                        epoch,
                        consumed: index + 1,
                    };
                    self.stats.delivered += 1;
                    batch.push(sample);
                }
                Message::Bad {
                    epoch,
                    index,
                    message,
                } => {
                    self.skipped(epoch, index);
                    tracing::warn!("skipped sample {message}");
                    self.note_problem(message);
                }
                Message::Unlabelled {
                    epoch,
                    index,
                    origin,
                } => {
                    self.skipped(epoch, index);
                    self.pass_unlabelled += 1;
                    self.unlabelled += 1;
                    if self.unlabelled == 1 {
                        // Once: every such sample has the same cause.
                        tracing::warn!(
                            "skipped sample {origin}: a class index (.cls) but no caption (.txt), \
                             and {UNLABELLED_HINT}. Further samples like it are skipped without \
                             a warning"
                        );
                        self.note_problem(format!("{origin}: class index but no class names"));
                    }
                }
                Message::EpochEnd { epoch, good } => {
                    if good == 0 {
                        self.done = true;
                        if self.pass_unlabelled > 0 && self.pass_unlabelled == self.pass_skipped {
                            return Err(DataError::Invalid(format!(
                                "a whole pass over the data gave no usable sample: all {} \
                                 samples have a class index (KEY.cls) but no caption (KEY.txt), \
                                 and {UNLABELLED_HINT}",
                                self.pass_unlabelled
                            )));
                        }
                        let unlabelled = match self.pass_unlabelled {
                            0 => String::new(),
                            n => format!("; {n} of them for a class index without class names"),
                        };
                        let recent = &self.stats.recent_errors;
                        return Err(DataError::Invalid(format!(
                            "a whole pass over the data gave no usable sample ({} skipped{unlabelled}; \
                             last problems: {})",
                            self.pass_skipped,
                            recent[recent.len().saturating_sub(5)..].join("; ")
                        )));
                    }
                    self.position = DataPosition {
                        epoch: epoch + 1,
                        consumed: 0,
                    };
                    self.pass_skipped = 0;
                    self.pass_unlabelled = 0;
                }
                Message::Failed(m) => {
                    self.done = true;
                    return Err(DataError::Invalid(m));
                }
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// Counts the sample at `index` of pass `epoch` as skipped, and moves the
    /// position past it.
    fn skipped(&mut self, epoch: u64, index: u64) {
        self.position = DataPosition {
            epoch,
            consumed: index + 1,
        };
        self.stats.skipped += 1;
        self.pass_skipped += 1;
    }

    /// Keeps `message` among the latest few problems.
    fn note_problem(&mut self, message: String) {
        self.stats.recent_errors.push(message);
        let len = self.stats.recent_errors.len();
        if len > 20 {
            self.stats.recent_errors.drain(..len - 20);
        }
    }

    /// The position right after the last delivered sample.
    pub fn position(&self) -> DataPosition {
        self.position
    }

    pub fn stats(&self) -> LoaderStats {
        self.stats.clone()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail and return.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Raw samples decoded per parallel round.
const ROUND: usize = 64;

fn produce(config: LoaderConfig, start: DataPosition, tx: SyncSender<Message>) {
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(config.workers.max(1))
        .thread_name(|i| format!("seer-decode-{i}"))
        .build()
    {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Message::Failed(format!(
                "cannot start decoding threads: {e}"
            )));
            return;
        }
    };
    let mut epoch = start.epoch;
    let mut skip = start.consumed;
    loop {
        let mut good = 0u64;
        let mut index = 0u64;
        let mut pending: Vec<(u64, RawSample)> = Vec::with_capacity(ROUND);
        let mut alive = true;
        let flush = |pending: &mut Vec<(u64, RawSample)>, good: &mut u64| -> bool {
            let decoded: Vec<Message> = pool.install(|| {
                pending
                    .par_iter()
                    .map(|(i, raw)| decode(&config, epoch, *i, raw))
                    .collect()
            });
            pending.clear();
            for m in decoded {
                if matches!(m, Message::Good { .. }) {
                    *good += 1;
                }
                if tx.send(m).is_err() {
                    return false;
                }
            }
            true
        };
        epoch_stream(&config, epoch, &mut |raw| {
            let i = index;
            index += 1;
            if i < skip {
                return true;
            }
            pending.push((i, raw));
            if pending.len() >= ROUND {
                alive = flush(&mut pending, &mut good);
            }
            alive
        });
        if !alive || !flush(&mut pending, &mut good) {
            return;
        }
        if index == 0 {
            // Nothing was skipped either, so there is no problem to report: say so.
            let _ = tx.send(Message::Failed(no_samples_message(&config.sources)));
            return;
        }
        // A resumed epoch counts the good samples delivered before the resume too.
        let good = good + (skip > 0) as u64;
        if tx.send(Message::EpochEnd { epoch, good }).is_err() || !config.repeat {
            return;
        }
        epoch += 1;
        skip = 0;
    }
}

fn no_samples_message(sources: &[DataSource]) -> String {
    let names: Vec<String> = sources
        .iter()
        .map(|s| match s {
            DataSource::Shard(p) | DataSource::Jsonl(p) | DataSource::Csv(p) => {
                p.display().to_string()
            }
        })
        .collect();
    format!(
        "the data holds no samples: {} (a shard needs members like KEY.jpg with KEY.txt or \
         KEY.cls; a list needs rows)",
        names.join(", ")
    )
}

/// The raw samples of one epoch in delivery order: sources (shuffled when
/// shuffling) read in turn through the shuffle buffer.
fn epoch_stream(config: &LoaderConfig, epoch: u64, sink: &mut dyn FnMut(RawSample) -> bool) {
    let shuffling = config.shuffle_buffer > 1;
    let mut order: Vec<&DataSource> = config.sources.iter().collect();
    let mut rng = Rng::for_stream(&[config.seed, epoch, 0x5a]);
    if shuffling {
        rng.shuffle(&mut order);
    }
    let mut buffer: Vec<RawSample> = Vec::new();
    let mut alive = true;
    for source in order {
        if !alive {
            return;
        }
        read_source(source, &mut |raw| {
            if !shuffling {
                alive = sink(raw);
                return alive;
            }
            buffer.push(raw);
            if buffer.len() >= config.shuffle_buffer {
                let k = rng.below(buffer.len());
                alive = sink(buffer.swap_remove(k));
            }
            alive
        });
    }
    while alive && !buffer.is_empty() {
        let k = rng.below(buffer.len());
        alive = sink(buffer.swap_remove(k));
    }
}

fn decode(config: &LoaderConfig, epoch: u64, index: u64, raw: &RawSample) -> Message {
    let bad = |cause: String| Message::Bad {
        epoch,
        index,
        message: format!("{}: {cause}", raw.origin),
    };
    if let Some(e) = &raw.error {
        return bad(e.clone());
    }
    let mut rng = Rng::for_stream(&[config.seed, epoch, index, 0xa1]);
    let class = match &raw.class {
        Some(text) => match text.parse::<usize>() {
            Ok(c) => Some(c),
            Err(_) => return bad(format!("class '{text}' is not an index")),
        },
        None => None,
    };
    let caption = match (&raw.caption, class, &config.prompts) {
        (Some(c), _, _) if !c.is_empty() => c.clone(),
        (_, Some(c), Some(p)) => {
            let Some(name) = p.classes.get(c) else {
                return bad(format!(
                    "class index {c} but only {} class names",
                    p.classes.len()
                ));
            };
            if p.templates.is_empty() {
                return bad("no caption templates".into());
            }
            p.templates[rng.below(p.templates.len())].replace("{}", name)
        }
        (_, Some(_), None) => {
            return Message::Unlabelled {
                epoch,
                index,
                origin: raw.origin.clone(),
            }
        }
        _ => return bad("no caption".into()),
    };
    if let (Some(c), Some(p)) = (class, &config.prompts) {
        if c >= p.classes.len() {
            return bad(format!(
                "class index {c} but only {} class names",
                p.classes.len()
            ));
        }
    }
    let image = match (&raw.image, &raw.image_path) {
        (Some((name, bytes)), _) => decode_bytes_full(bytes, name, &config.limits),
        (None, Some(path)) => decode_file_full(path, &config.limits),
        (None, None) => return bad("no image".into()),
    };
    let image = match image {
        Ok(i) => i,
        Err(e) => return bad(e.to_string()),
    };
    let pixels = match &config.augment {
        None => seer_image::preprocess_decoded(&image, &config.preprocess),
        Some(aug) => {
            let crop = aug.apply(&image.to_rgb(), config.preprocess.crop_size, &mut rng);
            let mut out = Vec::with_capacity(3 * (crop.width() * crop.height()) as usize);
            seer_image::normalize_into(&crop, &config.preprocess, &mut out);
            out
        }
    };
    Message::Good {
        epoch,
        index,
        sample: Sample {
            key: raw.key.clone(),
            origin: raw.origin.clone(),
            pixels,
            caption,
            class,
        },
    }
}
