//! Ranks as threads of one process: the [`Collective`] for tests and for
//! trying a data-parallel configuration without MPI.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::Collective;
use crate::{Error, Result};

/// One contribution to an exchange.
#[derive(Clone)]
enum Payload {
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<u8>),
}

impl Payload {
    fn kind(&self) -> &'static str {
        match self {
            Payload::F32(_) => "an f32 sum",
            Payload::F64(_) => "an f64 sum",
            Payload::Bytes(_) => "a broadcast",
        }
    }
}

#[derive(Default)]
struct Round {
    /// Rounds completed so far.
    generation: u64,
    contributions: Vec<Option<Payload>>,
    /// The result of round `generation - 1`, read by the ranks that waited.
    last: Option<Arc<Result<Payload, String>>>,
}

struct Shared {
    round: Mutex<Round>,
    done: Condvar,
}

/// A rank of a group of threads that exchange through shared memory, with
/// the same semantics and time limit as `mpi::MpiWorld` (the `mpi` feature):
/// sums are taken in rank order, and a rank that does not join an exchange
/// within the time limit makes the others fail with
/// [`Error::Timeout`] naming it.
///
/// ```
/// use idx_flow_train::distributed::{Collective, LocalGroup};
/// use std::time::Duration;
///
/// let ranks = LocalGroup::new(2, Duration::from_secs(10));
/// let sums: Vec<Vec<f32>> = std::thread::scope(|s| {
///     let handles: Vec<_> = ranks
///         .iter()
///         .map(|rank| {
///             s.spawn(move || {
///                 let mut v = vec![rank.rank() as f32 + 1.0; 3];
///                 rank.all_reduce_sum_f32(&mut v, "an example").unwrap();
///                 v
///             })
///         })
///         .collect();
///     handles.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(sums, vec![vec![3.0; 3], vec![3.0; 3]]);
/// ```
pub struct LocalGroup {
    shared: Arc<Shared>,
    rank: usize,
    size: usize,
    timeout: Duration,
}

impl LocalGroup {
    /// The `size` ranks of a new group; each waits at most `timeout` for the
    /// others at every exchange.
    pub fn new(size: usize, timeout: Duration) -> Vec<LocalGroup> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                contributions: vec![None; size],
                ..Round::default()
            }),
            done: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalGroup {
                shared: shared.clone(),
                rank,
                size,
                timeout,
            })
            .collect()
    }

    /// Contributes `mine` to the current round and returns the round's
    /// result once every rank has contributed.
    fn exchange(&self, mine: Payload, what: &str) -> Result<Payload> {
        let lock_error = || Error::Distributed(format!("{what}: another rank panicked"));
        let mut round = self.shared.round.lock().map_err(|_| lock_error())?;
        let generation = round.generation;
        round.contributions[self.rank] = Some(mine);
        if round.contributions.iter().all(Option::is_some) {
            let all: Vec<Payload> = round
                .contributions
                .iter_mut()
                .filter_map(Option::take)
                .collect();
            round.last = Some(Arc::new(combine(&all)));
            round.generation += 1;
            self.shared.done.notify_all();
        } else {
            let (waited, timeout) = self
                .shared
                .done
                .wait_timeout_while(round, self.timeout, |r| r.generation == generation)
                .map_err(|_| lock_error())?;
            round = waited;
            if timeout.timed_out() {
                let missing: Vec<String> = round
                    .contributions
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.is_none())
                    .map(|(r, _)| r.to_string())
                    .collect();
                return Err(Error::Timeout {
                    what: format!(
                        "rank {} of {} waited for {what}, but rank {} never joined it (it stopped, \
                         failed or hangs)",
                        self.rank,
                        self.size,
                        missing.join(", ")
                    ),
                    seconds: self.timeout.as_secs_f64(),
                });
            }
        }
        let result = round.last.clone().ok_or_else(|| {
            Error::Distributed(format!("{what}: the round ended without a result"))
        })?;
        match result.as_ref() {
            Ok(payload) => Ok(payload.clone()),
            Err(message) => Err(Error::Distributed(format!("{what}: {message}"))),
        }
    }
}

/// The element types the ranks sum, and their payloads.
trait Summed: Copy + std::ops::AddAssign + 'static {
    fn payload(values: Vec<Self>) -> Payload;
    fn values(payload: &Payload) -> Option<&[Self]>;
}

impl Summed for f32 {
    fn payload(values: Vec<Self>) -> Payload {
        Payload::F32(values)
    }
    fn values(payload: &Payload) -> Option<&[Self]> {
        match payload {
            Payload::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Summed for f64 {
    fn payload(values: Vec<Self>) -> Payload {
        Payload::F64(values)
    }
    fn values(payload: &Payload) -> Option<&[Self]> {
        match payload {
            Payload::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Sums (in rank order) or rank 0's bytes; an error when the ranks
/// contributed different kinds or lengths (they called different exchanges).
fn combine(all: &[Payload]) -> Result<Payload, String> {
    match &all[0] {
        Payload::Bytes(b) => Ok(Payload::Bytes(b.clone())),
        Payload::F32(_) => sum::<f32>(all),
        Payload::F64(_) => sum::<f64>(all),
    }
}

fn sum<T: Summed>(all: &[Payload]) -> Result<Payload, String> {
    let mut total = T::values(&all[0]).unwrap_or_default().to_vec();
    for (r, p) in all.iter().enumerate().skip(1) {
        match T::values(p) {
            Some(v) if v.len() == total.len() => {
                total.iter_mut().zip(v).for_each(|(s, x)| *s += *x)
            }
            _ => {
                return Err(format!(
                    "rank {r} contributed {} of another length or kind than rank 0's {} (the \
                     ranks run different programs or options)",
                    p.kind(),
                    all[0].kind()
                ));
            }
        }
    }
    Ok(T::payload(total))
}

impl LocalGroup {
    fn all_reduce_sum<T: Summed>(&self, values: &mut [T], what: &str) -> Result<()> {
        match T::values(&self.exchange(T::payload(values.to_vec()), what)?) {
            Some(sum) if sum.len() == values.len() => {
                values.copy_from_slice(sum);
                Ok(())
            }
            _ => Err(Error::Distributed(format!(
                "{what}: rank {} called a sum of {} {} values, rank 0 another exchange",
                self.rank,
                values.len(),
                std::any::type_name::<T>()
            ))),
        }
    }
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32], what: &str) -> Result<()> {
        self.all_reduce_sum(values, what)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64], what: &str) -> Result<()> {
        self.all_reduce_sum(values, what)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, what: &str) -> Result<()> {
        match self.exchange(Payload::Bytes(std::mem::take(bytes)), what)? {
            Payload::Bytes(b) => {
                *bytes = b;
                Ok(())
            }
            _ => Err(Error::Distributed(format!(
                "{what}: rank {} called a broadcast, rank 0 another exchange",
                self.rank
            ))),
        }
    }
}
