//! The language heads a server may hold besides its embedding models: a
//! captioning, a question-answering and an image–text matching model (BLIP
//! checkpoints; `seer serve --caption-model/--vqa-model/--match-model`).
//!
//! Each has its own thread and bounded queue, batching concurrent requests as
//! the embedding batcher does (see `batcher`): one generation over eight
//! images costs far less than eight, and room in the queue is taken by
//! request, all of a request's items or none (see [`crate::batcher::Queue`]):
//! a queue without room refuses at once (503) instead of holding memory
//! without bound. Requests that a model runs differently (captions with
//! another prompt) share a gathering but run as separate model batches.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use seer_engine::{GenerateOptions, Generated, LoadedModel, MatchScore};
use tokio::sync::oneshot;

use crate::batcher::{BatchStats, Queue, Slot, SubmitError, Taken};
use crate::error::{ApiError, ApiResult};
use crate::models::BatchSettings;

/// What a head does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Caption,
    Answer,
    Match,
}

impl Head {
    /// The `seer serve` option that gives a server this head.
    pub fn option(self) -> &'static str {
        match self {
            Head::Caption => "--caption-model",
            Head::Answer => "--vqa-model",
            Head::Match => "--match-model",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Head::Caption => "caption model",
            Head::Answer => "question-answering (VQA) model",
            Head::Match => "image-text matching model",
        }
    }

    /// Whether `model` has this head: the model's own error (naming it and
    /// the checkpoint it would need) when it has not.
    pub fn check(self, model: &LoadedModel) -> seer_engine::Result<()> {
        match self {
            Head::Caption => model.captioner().map(|_| ()),
            Head::Answer => model.answerer().map(|_| ()),
            Head::Match => model.matcher().map(|_| ()),
        }
    }

    /// A decoded image as this head's input.
    pub fn preprocess(
        self,
        model: &LoadedModel,
        image: &seer_image::DecodedImage,
    ) -> seer_engine::Result<Vec<f32>> {
        Ok(match self {
            Head::Caption => model.captioner()?.preprocess(image),
            Head::Answer => model.answerer()?.preprocess(image),
            Head::Match => model.matcher()?.preprocess(image),
        })
    }
}

/// One image (preprocessed for the head) and what to do with it.
pub enum TaskWork {
    /// A caption, started with `prompt` when given.
    Caption {
        pixels: Vec<f32>,
        prompt: Option<String>,
    },
    /// The answer to `question` about the image.
    Answer { pixels: Vec<f32>, question: String },
    /// How well each of `texts` describes the image (one image in the queue,
    /// however many texts: the model thread repeats it per text).
    Match {
        pixels: Vec<f32>,
        texts: Vec<String>,
    },
}

pub enum TaskOutput {
    Text(Generated),
    /// One score per text, in their order.
    Scores(Vec<MatchScore>),
}

type Reply = oneshot::Sender<Result<TaskOutput, String>>;
type Item = (TaskWork, Reply);

/// A slot in a head's queue (see [`TaskServer::reserve`]).
pub type TaskSlot = Slot<Item>;

/// A head model with its batching thread.
pub struct TaskServer {
    pub model: LoadedModel,
    queue: Queue<Item>,
}

impl TaskServer {
    /// Starts the thread of `model`, which must have `head` (see [`Head::check`]).
    pub fn start(head: Head, model: LoadedModel, batching: BatchSettings) -> Self {
        let (queue, rx, taken) = Queue::new(batching.queue_capacity);
        let m = model.clone();
        std::thread::Builder::new()
            .name(format!("seer-{head:?}").to_lowercase())
            .spawn(move || run(head, m, rx, batching, taken))
            .expect("spawn a model thread");
        Self { model, queue }
    }

    /// Items reserved or queued and not yet taken by the model thread.
    pub fn depth(&self) -> usize {
        self.queue.depth()
    }

    pub fn stats(&self) -> &BatchStats {
        &self.queue.stats
    }

    /// Room for a request's `n` items, all or none (see [`Queue::reserve`]).
    pub fn reserve(&self, n: usize) -> Result<Vec<TaskSlot>, SubmitError> {
        self.queue.reserve(n)
    }

    /// Queues one item in a reserved slot; its output arrives on the receiver.
    pub fn submit(
        &self,
        slot: TaskSlot,
        work: TaskWork,
    ) -> Result<oneshot::Receiver<Result<TaskOutput, String>>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        slot.send((work, reply))?;
        Ok(rx)
    }
}

/// The heads a server holds, each optional.
#[derive(Default)]
pub struct Tasks {
    pub caption: Option<TaskServer>,
    pub answer: Option<TaskServer>,
    pub matcher: Option<TaskServer>,
}

impl Tasks {
    pub fn get(&self, head: Head) -> Option<&TaskServer> {
        match head {
            Head::Caption => self.caption.as_ref(),
            Head::Answer => self.answer.as_ref(),
            Head::Match => self.matcher.as_ref(),
        }
    }

    /// The head, or the error a request for it gets (400: the server was
    /// started without it, and how to start one with it).
    pub fn need(&self, head: Head) -> ApiResult<&TaskServer> {
        self.get(head).ok_or_else(|| {
            ApiError::bad_request(format!(
                "this server has no {}; start it with `seer serve {} MODEL`",
                head.what(),
                head.option()
            ))
        })
    }

    /// Refuses (400) a text `head`'s model would refuse for any image, before
    /// a request queues its work: a caption's prompt (None: none), a question,
    /// a text to match. `what` names it (`prompt`, `question`, `text 2`). A
    /// 400 when the server lacks the head too.
    pub fn check_text(&self, head: Head, text: Option<&str>, what: &str) -> ApiResult<()> {
        let model = &self.need(head)?.model;
        let options = GenerateOptions::default();
        let checked = match (head, text) {
            (Head::Caption, prompt) => model
                .captioner()
                .and_then(|c| c.check_prompt(prompt, what, &options)),
            (Head::Answer, Some(question)) => model
                .answerer()
                .and_then(|a| a.check_question(question, what, &options)),
            (Head::Match, Some(text)) => model.matcher().and_then(|m| m.check_text(text, what)),
            (_, None) => Ok(()),
        };
        checked.map_err(|e| match e {
            seer_engine::EngineError::Invalid(message) => ApiError::bad_request(message),
            other => ApiError::internal(other),
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &TaskServer> {
        [&self.caption, &self.answer, &self.matcher]
            .into_iter()
            .flatten()
    }
}

fn run(head: Head, model: LoadedModel, rx: Receiver<Item>, batching: BatchSettings, taken: Taken) {
    let max_batch = batching.max_batch.max(1);
    // A batch is measured in model inputs: a match of eight texts is eight.
    let inputs = |work: &TaskWork| match work {
        TaskWork::Match { texts, .. } => texts.len().max(1),
        _ => 1,
    };
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + batching.max_wait;
        let mut size = inputs(&first.0);
        let mut batch = vec![first];
        while size < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(item) => {
                    size += inputs(&item.0);
                    batch.push(item);
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        taken.took(batch.len());
        // Items the model runs alike: captions by prompt; the rest together.
        let mut groups: Vec<(Option<String>, Vec<Item>)> = Vec::new();
        for (work, reply) in batch {
            let key = match &work {
                TaskWork::Caption { prompt, .. } => prompt.clone(),
                _ => None,
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, items)) => items.push((work, reply)),
                None => groups.push((key, vec![(work, reply)])),
            }
        }
        for (prompt, items) in groups {
            run_group(head, &model, prompt.as_deref(), items);
        }
    }
}

/// One model batch; every item gets the model's error when it fails.
fn run_group(head: Head, model: &LoadedModel, prompt: Option<&str>, items: Vec<(TaskWork, Reply)>) {
    // The model's inputs: one per caption or question, one per text of a match.
    let mut pixels = Vec::new();
    let mut texts = Vec::new();
    let mut counts = Vec::with_capacity(items.len());
    let mut replies = Vec::with_capacity(items.len());
    let mut wrong = None;
    for (work, reply) in items {
        match (head, work) {
            (Head::Caption, TaskWork::Caption { pixels: p, .. }) => {
                pixels.extend(p);
                counts.push(1);
            }
            (
                Head::Answer,
                TaskWork::Answer {
                    pixels: p,
                    question,
                },
            ) => {
                pixels.extend(p);
                texts.push(question);
                counts.push(1);
            }
            (
                Head::Match,
                TaskWork::Match {
                    pixels: p,
                    texts: t,
                },
            ) => {
                for _ in &t {
                    pixels.extend_from_slice(&p);
                }
                counts.push(t.len());
                texts.extend(t);
            }
            _ => {
                wrong.get_or_insert("work of another kind reached this model");
                counts.push(0);
            }
        }
        replies.push(reply);
    }
    let n: usize = counts.iter().sum();
    let result: Result<Vec<TaskOutput>, String> = match wrong {
        Some(e) => Err(e.to_string()),
        None => run_model(head, model, prompt, pixels, n, &texts, &counts),
    };
    match result {
        Ok(outputs) => {
            for (reply, output) in replies.into_iter().zip(outputs) {
                let _ = reply.send(Ok(output)); // the client may have gone away
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Runs `n` inputs and splits the outputs back into one per item (`counts`
/// inputs each).
fn run_model(
    head: Head,
    model: &LoadedModel,
    prompt: Option<&str>,
    pixels: Vec<f32>,
    n: usize,
    texts: &[String],
    counts: &[usize],
) -> Result<Vec<TaskOutput>, String> {
    let options = GenerateOptions::default();
    let mismatch = |got: usize| format!("the model gave {got} outputs for {n} inputs");
    match head {
        Head::Caption | Head::Answer => {
            let generated = match head {
                Head::Caption => model
                    .captioner()
                    .and_then(|c| c.caption(pixels, n, prompt, &options)),
                _ => model
                    .answerer()
                    .and_then(|a| a.answer(pixels, n, texts, &options)),
            }
            .map_err(|e| e.to_string())?;
            match generated.len() == n {
                true => Ok(generated.into_iter().map(TaskOutput::Text).collect()),
                false => Err(mismatch(generated.len())),
            }
        }
        Head::Match => {
            let scores = model
                .matcher()
                .and_then(|m| m.match_texts(pixels, n, texts))
                .map_err(|e| e.to_string())?;
            if scores.len() != n {
                return Err(mismatch(scores.len()));
            }
            let mut scores = scores.into_iter();
            Ok(counts
                .iter()
                .map(|&k| TaskOutput::Scores(scores.by_ref().take(k).collect()))
                .collect())
        }
    }
}
