//! Dynamic batching: concurrent requests share model batches.
//!
//! Requests go into a bounded queue; one model thread takes the first waiting item,
//! then gathers more until the batch is full or `max_wait` has passed since that
//! first item, and runs texts and images as one batch each.
//!
//! Room in the queue is taken by request, not by item (see [`Queue::reserve`]): a
//! request reserves a slot for every item it will queue (the prompts of a
//! classification, the texts and images of an embedding) before it queues any,
//! all or none. When the queue has no room for all of them now, the request is
//! refused at once (the caller answers 503 with Retry-After), so memory never
//! grows without bound under overload and no item is computed for a request that
//! is then refused; a request with more items than the queue holds at all is
//! told so (400), since retrying could never help. A classification's prompts
//! are the exception: once its first part is admitted, the rest go in parts of
//! half the queue as room frees ([`Queue::reserve_waiting`]).

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
type Item = (Work, Reply);

/// A slot in an embedding batcher's queue (see [`Batcher::reserve`]).
pub type EmbedSlot = Slot<Item>;

#[derive(Default)]
pub struct BatchStats {
    pub batches: AtomicUsize,
    pub items: AtomicUsize,
    /// Requests refused because the queue had no room for their items.
    pub rejected: AtomicUsize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue has no room for the request's items now: try again later.
    Busy,
    /// The request has more items than the queue holds at all: retrying
    /// cannot help.
    TooMany { items: usize, capacity: usize },
    /// The model thread stopped.
    Stopped,
}

/// A model thread's bounded queue of items, admitted by request.
///
/// `depth` counts the items reserved and not yet taken by the model thread:
/// slots not used yet, items in the channel, and items the thread is gathering
/// into a batch. It never exceeds `capacity`, and the channel (of `capacity`
/// places) never holds more than `depth`, so a reserved slot always finds a place.
pub struct Queue<T> {
    tx: SyncSender<T>,
    depth: Arc<AtomicUsize>,
    capacity: usize,
    pub stats: Arc<BatchStats>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            depth: self.depth.clone(),
            capacity: self.capacity,
            stats: self.stats.clone(),
        }
    }
}

impl<T> Queue<T> {
    /// A queue of `capacity` items (at least 1) and the model thread's end of it,
    /// which reports what it took with [`Taken::took`].
    pub fn new(capacity: usize) -> (Self, Receiver<T>, Taken) {
        let capacity = capacity.max(1);
        let (tx, rx) = sync_channel(capacity);
        let depth = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(BatchStats::default());
        let taken = Taken {
            depth: depth.clone(),
            stats: stats.clone(),
        };
        let queue = Self {
            tx,
            depth,
            capacity,
            stats,
        };
        (queue, rx, taken)
    }

    /// Items reserved or queued and not yet taken by the model thread.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// A slot for each of a request's `n` items, all or none: [`SubmitError::Busy`]
    /// when the queue has no room for all of them now, [`SubmitError::TooMany`]
    /// when it never could. A slot not used is given back when dropped.
    pub fn reserve(&self, n: usize) -> Result<Vec<Slot<T>>, SubmitError> {
        self.fits(n)?;
        self.take(n).ok_or_else(|| {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            SubmitError::Busy
        })
    }

    /// [`Queue::reserve`], waiting for room instead of refusing when the queue
    /// has none now: for the later parts of a request admitted already (a
    /// classification's prompts beyond the queue's size go in parts). It waits
    /// as long as its caller does (the server's request timeout ends it).
    pub async fn reserve_waiting(&self, n: usize) -> Result<Vec<Slot<T>>, SubmitError> {
        self.fits(n)?;
        loop {
            if let Some(slots) = self.take(n) {
                return Ok(slots);
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    /// How many items the queue holds at all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn fits(&self, n: usize) -> Result<(), SubmitError> {
        if n > self.capacity {
            return Err(SubmitError::TooMany {
                items: n,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// `n` slots when the queue has room for them now.
    fn take(&self, n: usize) -> Option<Vec<Slot<T>>> {
        let capacity = self.capacity;
        self.depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (d + n <= capacity).then_some(d + n)
            })
            .ok()?;
        Some(
            (0..n)
                .map(|_| Slot {
                    tx: self.tx.clone(),
                    depth: self.depth.clone(),
                    sent: false,
                })
                .collect(),
        )
    }
}

/// Room for one item in a [`Queue`], reserved by a request.
pub struct Slot<T> {
    tx: SyncSender<T>,
    depth: Arc<AtomicUsize>,
    sent: bool,
}

impl<T> Slot<T> {
    /// Queues `item` in the reserved place.
    pub fn send(mut self, item: T) -> Result<(), SubmitError> {
        match self.tx.try_send(item) {
            Ok(()) => {
                // The model thread counts it off when it takes it.
                self.sent = true;
                Ok(())
            }
            // Not reachable while the reservations hold (see `Queue`); refused
            // like a full queue should it happen.
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::Stopped),
        }
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        if !self.sent {
            self.depth.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The model thread's counter of what it took from a [`Queue`].
pub struct Taken {
    depth: Arc<AtomicUsize>,
    stats: Arc<BatchStats>,
}

impl Taken {
    /// The thread took `n` items as one batch: their places are free again.
    pub fn took(&self, n: usize) {
        self.depth.fetch_sub(n, Ordering::AcqRel);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.items.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone)]
pub struct Batcher {
    queue: Queue<Item>,
}

impl Batcher {
    pub fn start(
        model: LoadedModel,
        max_batch: usize,
        max_wait: Duration,
        capacity: usize,
    ) -> Self {
        let (queue, rx, taken) = Queue::new(capacity);
        std::thread::Builder::new()
            .name("seer-batcher".into())
            .spawn(move || run(model, rx, max_batch.max(1), max_wait, taken))
            .expect("spawn the batching thread");
        Self { queue }
    }

    /// Items reserved or queued and not yet taken by the model thread.
    pub fn depth(&self) -> usize {
        self.queue.depth()
    }

    pub fn stats(&self) -> &BatchStats {
        &self.queue.stats
    }

    /// Room for a request's `n` items, all or none (see [`Queue::reserve`]).
    pub fn reserve(&self, n: usize) -> Result<Vec<EmbedSlot>, SubmitError> {
        self.queue.reserve(n)
    }

    /// Room for `n` more items of a request admitted already, when there is
    /// (see [`Queue::reserve_waiting`]).
    pub async fn reserve_waiting(&self, n: usize) -> Result<Vec<EmbedSlot>, SubmitError> {
        self.queue.reserve_waiting(n).await
    }

    /// How many items the queue holds at all (`seer serve --queue`).
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Queues one item in a reserved slot; the embedding (L2-normalised)
    /// arrives on the receiver.
    pub fn submit(
        &self,
        slot: EmbedSlot,
        work: Work,
    ) -> Result<oneshot::Receiver<Result<Vec<f32>, String>>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        slot.send((work, reply))?;
        Ok(rx)
    }
}

fn run(model: LoadedModel, rx: Receiver<Item>, max_batch: usize, max_wait: Duration, taken: Taken) {
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
        taken.took(batch.len());

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_gets_room_for_all_its_items_or_none() {
        let (queue, rx, taken) = Queue::<u32>::new(4);
        let first = queue.reserve(3).unwrap();
        assert_eq!(queue.depth(), 3);
        // Two more do not fit beside three: refused whole, nothing taken.
        assert_eq!(queue.reserve(2).err(), Some(SubmitError::Busy));
        assert_eq!(queue.depth(), 3);
        assert_eq!(queue.stats.rejected.load(Ordering::Relaxed), 1);
        let one = queue.reserve(1).unwrap();
        for (i, slot) in first.into_iter().chain(one).enumerate() {
            slot.send(i as u32).unwrap();
        }
        assert_eq!(queue.depth(), 4);
        // Places come back only when the model thread takes the items.
        assert_eq!(queue.reserve(1).err(), Some(SubmitError::Busy));
        let got: Vec<u32> = rx.try_iter().collect();
        assert_eq!(got, [0, 1, 2, 3]);
        taken.took(got.len());
        assert_eq!(queue.depth(), 0);
        assert_eq!(queue.stats.items.load(Ordering::Relaxed), 4);
        assert_eq!(queue.reserve(4).unwrap().len(), 4);
    }

    #[test]
    fn more_items_than_the_queue_holds_is_told_apart_from_busy() {
        let (queue, _rx, _taken) = Queue::<u32>::new(2);
        assert_eq!(
            queue.reserve(3).err(),
            Some(SubmitError::TooMany {
                items: 3,
                capacity: 2
            })
        );
        // Not a busy queue: nothing counted as a 503.
        assert_eq!(queue.stats.rejected.load(Ordering::Relaxed), 0);
        assert_eq!(queue.depth(), 0);
        assert!(queue.reserve(0).unwrap().is_empty());
    }

    #[test]
    fn unused_slots_are_given_back() {
        let (queue, rx, taken) = Queue::<u32>::new(3);
        let mut slots = queue.reserve(3).unwrap();
        slots.pop().unwrap().send(7).unwrap();
        // A request that fails before queueing the rest frees their places.
        drop(slots);
        assert_eq!(queue.depth(), 1);
        assert_eq!(rx.try_recv(), Ok(7));
        taken.took(1);
        assert_eq!(queue.depth(), 0);
        // A stopped model thread is told apart from a full queue.
        drop(rx);
        let slot = queue.reserve(1).unwrap().pop().unwrap();
        assert_eq!(slot.send(1), Err(SubmitError::Stopped));
        assert_eq!(queue.depth(), 0);
    }
}
