//! Dynamic batching: concurrent requests share model batches.
//!
//! Requests go into a bounded queue; one model thread takes the first waiting item,
//! then gathers more until the batch is full or `max_wait` has passed since that
//! first item, and runs texts and images as one batch each. A full queue is refused
//! at once (the caller answers 503 with Retry-After) so memory never grows without
//! bound under overload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use seer_engine::{EmbedOptions, LoadedModel};
use tokio::sync::oneshot;

pub enum Work {
    Text(String),
    /// Preprocessed pixels (the image encoder's `pixels_len` floats).
    Pixels(Vec<f32>),
}

type Reply = oneshot::Sender<Result<Vec<f32>, String>>;

#[derive(Clone)]
pub struct Batcher {
    queue: SyncSender<(Work, Reply)>,
    depth: Arc<AtomicUsize>,
    pub stats: Arc<BatchStats>,
}

#[derive(Default)]
pub struct BatchStats {
    pub batches: AtomicUsize,
    pub items: AtomicUsize,
    pub rejected: AtomicUsize,
}

#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full: try again later.
    Busy,
    /// The model thread stopped.
    Stopped,
}

impl Batcher {
    pub fn start(
        model: LoadedModel,
        max_batch: usize,
        max_wait: Duration,
        capacity: usize,
    ) -> Self {
        let (tx, rx) = sync_channel(capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(BatchStats::default());
        let (d, s) = (depth.clone(), stats.clone());
        std::thread::Builder::new()
            .name("seer-batcher".into())
            .spawn(move || run(model, rx, max_batch.max(1), max_wait, d, s))
            .expect("spawn the batching thread");
        Self {
            queue: tx,
            depth,
            stats,
        }
    }

    /// Queued items not yet taken by the model thread.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues one item; the embedding (L2-normalised) arrives on the receiver.
    pub fn submit(
        &self,
        work: Work,
    ) -> Result<oneshot::Receiver<Result<Vec<f32>, String>>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send((work, reply)) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                        Err(SubmitError::Busy)
                    }
                    TrySendError::Disconnected(_) => Err(SubmitError::Stopped),
                }
            }
        }
    }
}

fn run(
    model: LoadedModel,
    rx: Receiver<(Work, Reply)>,
    max_batch: usize,
    max_wait: Duration,
    depth: Arc<AtomicUsize>,
    stats: Arc<BatchStats>,
) {
    let options = EmbedOptions {
        batch_size: max_batch,
        normalize: true,
        ..Default::default()
    };
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + max_wait;
        let mut batch = vec![first];
        while batch.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(item) => batch.push(item),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        depth.fetch_sub(batch.len(), Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.items.fetch_add(batch.len(), Ordering::Relaxed);

        let (mut texts, mut text_replies, mut pixels, mut image_replies) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (work, reply) in batch {
            match work {
                Work::Text(t) => {
                    texts.push(t);
                    text_replies.push(reply);
                }
                Work::Pixels(p) => {
                    pixels.extend(p);
                    image_replies.push(reply);
                }
            }
        }
        if !texts.is_empty() {
            answer(
                text_replies,
                model
                    .text()
                    .and_then(|t| t.embed_texts(&texts, &options))
                    .map_err(|e| e.to_string()),
            );
        }
        if !image_replies.is_empty() {
            let n = image_replies.len();
            answer(
                image_replies,
                model
                    .image()
                    .and_then(|i| i.embed_pixels(pixels, n, true))
                    .map_err(|e| e.to_string()),
            );
        }
    }
}

fn answer(replies: Vec<Reply>, result: Result<Vec<Vec<f32>>, String>) {
    match result {
        Ok(vectors) => {
            for (reply, v) in replies.into_iter().zip(vectors) {
                let _ = reply.send(Ok(v)); // the client may have gone away
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
