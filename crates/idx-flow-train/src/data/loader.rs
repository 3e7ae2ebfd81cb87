//! The order training sees its samples in, and the background thread that
//! reads them ahead.
//!
//! [`TrainingPlan`]: sample `i` of step `s` is the `(s·B + i)`-th draw of a
//! sequence of epochs, each a shuffle of the training maps from the seed, so
//! that a run resumed at step `s` sees exactly what the uninterrupted run saw.
//! With rotations on, each sample is also turned by a uniformly random
//! rotation, a pure function of `(seed, s, i)`.
//!
//! [`Prefetch`]: a thread reads the batches of the coming steps into a
//! bounded queue while the model trains on the current one; waiting for a
//! batch longer than a time limit is an error, not a silent hang.
//!
//! ```
//! use idx_flow_train::data::loader::TrainingPlan;
//! let train = [0, 1, 2, 3, 4];
//! let mut plan = TrainingPlan::new(7, 5, false, &train);
//! // One epoch of 5 samples: every training map once, in a seeded order.
//! let mut seen: Vec<usize> = plan.items(0).iter().map(|(t, _)| *t).collect();
//! seen.sort();
//! assert_eq!(seen, train);
//! ```

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use idx_flow_core::rng::SplitMix64;

use super::rotation::Rotation;
use crate::{Error, Result};

/// The stream of the generator that shuffles epoch `e`: step `u64::MAX − 1`
/// (training rotations use the step, held-out ones `u64::MAX`).
const SHUFFLE_STREAM: u64 = u64::MAX - 1;

/// The training maps in the order of epoch `epoch`: a Fisher–Yates shuffle
/// drawn from `(seed, epoch)`.
pub fn epoch_order(seed: u64, epoch: u64, train: &[usize]) -> Vec<usize> {
    let mut order = train.to_vec();
    let mut rng = SplitMix64::for_stream(seed, SHUFFLE_STREAM, epoch);
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Which map, under which rotation, each sample of each step shows.
#[derive(Clone, Debug)]
pub struct TrainingPlan {
    seed: u64,
    batch: usize,
    rotate: bool,
    train: Vec<usize>,
    epoch: Option<(u64, Vec<usize>)>,
}

impl TrainingPlan {
    /// `batch` samples per step from the maps `train`, rotated when `rotate`.
    pub fn new(seed: u64, batch: usize, rotate: bool, train: &[usize]) -> Self {
        Self {
            seed,
            batch,
            rotate,
            train: train.to_vec(),
            epoch: None,
        }
    }

    /// Sample `index` of step `step`: its map and rotation.
    pub fn item(&mut self, step: usize, index: usize) -> (usize, Rotation) {
        let n = self.train.len().max(1) as u64;
        let k = step as u64 * self.batch as u64 + index as u64;
        let epoch = k / n;
        if self.epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.epoch = Some((epoch, epoch_order(self.seed, epoch, &self.train)));
        }
        let t = self.epoch.as_ref().map_or(0, |(_, o)| o[(k % n) as usize]);
        let rotation = if self.rotate {
            let mut rng = SplitMix64::for_stream(self.seed, step as u64, index as u64);
            // The first draw chose the map before epochs existed; skipping it
            // keeps the rotations (and the main job's figures) as they were.
            let _ = rng.below(n);
            Rotation::random(&mut rng)
        } else {
            Rotation::IDENTITY
        };
        (t, rotation)
    }

    /// The samples of step `step`.
    pub fn items(&mut self, step: usize) -> Vec<(usize, Rotation)> {
        (0..self.batch).map(|i| self.item(step, i)).collect()
    }
}

/// Batches made by a background thread for consecutive steps, at most
/// `depth` ahead of the consumer.
pub struct Prefetch<T> {
    queue: Receiver<(usize, Result<T>)>,
    timeout: Duration,
}

impl<T: Send> Prefetch<T> {
    /// Starts a thread in `scope` that calls `make(step)` for each step of
    /// `steps` and queues the results; it stops when the queue's receiver is
    /// dropped.
    pub fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        steps: std::ops::Range<usize>,
        depth: usize,
        timeout: Duration,
        mut make: impl FnMut(usize) -> Result<T> + Send + 'scope,
    ) -> Self
    where
        T: 'scope,
    {
        let (tx, rx): (SyncSender<(usize, Result<T>)>, _) = sync_channel(depth.max(1));
        std::thread::Builder::new()
            .name("idx-flow-prefetch".into())
            .spawn_scoped(scope, move || {
                for step in steps {
                    let batch = make(step);
                    let failed = batch.is_err();
                    if tx.send((step, batch)).is_err() || failed {
                        break;
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| {
                // Without a thread the queue is empty; `next` reports it.
                eprintln!("cannot start the prefetch thread: {e}");
            });
        Self { queue: rx, timeout }
    }

    /// The batch of `step`: the next one in the queue, waiting at most the
    /// time limit.
    pub fn next(&self, step: usize) -> Result<T> {
        match self.queue.recv_timeout(self.timeout) {
            Ok((s, batch)) if s == step => batch,
            Ok((s, _)) => Err(Error::arg(
                "step",
                format!("the prefetch thread made step {s} where step {step} was expected"),
            )),
            Err(RecvTimeoutError::Timeout) => Err(Error::Timeout {
                what: format!(
                    "the prefetch thread delivered no batch for step {}; is the data on a slow or unresponsive file system?",
                    step + 1
                ),
                seconds: self.timeout.as_secs_f64(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(Error::arg(
                "data",
                format!(
                    "the prefetch thread stopped before step {} (it failed or could not start)",
                    step + 1
                ),
            )),
        }
    }
}
