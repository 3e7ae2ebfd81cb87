//! The ranks of an MPI job (`mpirun -n P …`, slurm's `srun`) as a
//! [`Collective`], on rsmpi over the system's MPI library.
//!
//! Every exchange goes through rank 0 with non-blocking point-to-point
//! messages polled against a deadline: each rank sends its part to rank 0,
//! rank 0 sums the parts in rank order and sends the result back. So every
//! rank holds the same bits (the sum is the single-process trainer's for two
//! ranks), a rank that does not arrive is named by rank 0, and a rank whose
//! rank 0 does not answer names rank 0, within the time limit. Rank 0 does
//! `O(P)` of the work: for the main job's models (kilobytes to a few
//! megabytes of gradients) and tens of ranks that is far below a step's
//! compute; MPI's own all-reduce (a ring) is the way to thousands of ranks.
//!
//! After a timeout MPI may still own the exchange's buffers, so the process
//! must not finalise MPI: report the error, then [`MpiWorld::abort`] the job.

use std::time::{Duration, Instant};

use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::request::{Request, StaticScope};
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::Collective;
use crate::{Error, Result};

/// Message tags: a rank's part of an exchange, rank 0's result, and the
/// length of a broadcast. Messages between two ranks with one tag arrive in
/// the order they were sent.
const TAG_GATHER: i32 = 0x1d0;
const TAG_RESULT: i32 = 0x1d1;
const TAG_LENGTH: i32 = 0x1d2;

/// This process's place in an MPI job.
///
/// ```no_run
/// use idx_flow_train::distributed::mpi::MpiWorld;
/// use std::time::Duration;
///
/// let world = MpiWorld::init(Duration::from_secs(300)).unwrap();
/// println!("rank {} of {}", world.rank_index(), world.ranks());
/// ```
pub struct MpiWorld {
    // Finalises MPI when dropped: keep it for the whole run.
    _universe: Universe,
    world: SimpleCommunicator,
    timeout: Duration,
}

/// A buffer lent to MPI for a non-blocking operation: reclaimed when the
/// operation completes, leaked when it times out (MPI may still write into
/// it; the job is aborted then).
struct Lent<T: 'static> {
    ptr: *mut [T],
}

impl<T: 'static> Lent<T> {
    fn new(values: Vec<T>) -> (Self, &'static mut [T]) {
        let ptr = Box::into_raw(values.into_boxed_slice());
        // SAFETY: `ptr` comes from a live box; the reference is the only one
        // until `reclaim`, which the caller calls only after MPI is done.
        (Self { ptr }, unsafe { &mut *ptr })
    }

    /// SAFETY: the operation using the buffer has completed and the
    /// reference handed out by `new` is gone.
    unsafe fn reclaim(self) -> Vec<T> {
        unsafe { Box::from_raw(self.ptr) }.into_vec()
    }
}

impl MpiWorld {
    /// Initialises MPI for this process (once; MPI calls come from this
    /// thread only) with `timeout` per exchange.
    pub fn init(timeout: Duration) -> Result<Self> {
        let (universe, _) =
            mpi::initialize_with_threading(mpi::Threading::Funneled).ok_or_else(|| {
                Error::Distributed("MPI is initialised already in this process".into())
            })?;
        let world = universe.world();
        Ok(Self {
            _universe: universe,
            world,
            timeout,
        })
    }

    /// Whether an MPI launcher (mpirun, mpiexec, srun) started this process:
    /// [`launched_ranks`](super::launched_ranks), or slurm's PMIx (which sets
    /// a rank but no size).
    pub fn launched() -> bool {
        super::launched_ranks().is_some() || std::env::var_os("PMIX_RANK").is_some()
    }

    /// This process's rank.
    pub fn rank_index(&self) -> usize {
        self.world.rank() as usize
    }

    /// The number of ranks.
    pub fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    /// Ends every rank of the job with exit code `code` (MPI_Abort). Call it
    /// after reporting an error, instead of returning: a rank whose exchange
    /// failed must not finalise MPI.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    fn timed_out(&self, what: String) -> Error {
        Error::Timeout {
            what,
            seconds: self.timeout.as_secs_f64(),
        }
    }

    /// Polls `request` until it completes or the deadline passes; on the
    /// deadline the request is leaked with its buffers and `Err(())` returned.
    fn wait<D: ?Sized>(
        &self,
        mut request: Request<'static, D, StaticScope>,
        deadline: Instant,
    ) -> std::result::Result<(), ()> {
        let mut polls = 0u32;
        loop {
            match request.test() {
                Ok(_) => return Ok(()),
                Err(pending) => request = pending,
            }
            if Instant::now() >= deadline {
                std::mem::forget(request);
                return Err(());
            }
            // Spin briefly (exchanges of a step usually complete within
            // microseconds of the last rank's arrival), then sleep.
            polls += 1;
            if polls < 2000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Waits for `requests` (one per rank 1, 2, … in order) until `deadline`;
    /// the ranks whose request did not complete, as "1, 3" (empty when all did).
    fn wait_all<D: ?Sized>(
        &self,
        requests: Vec<Request<'static, D, StaticScope>>,
        deadline: Instant,
    ) -> String {
        let missing: Vec<String> = requests
            .into_iter()
            .enumerate()
            .filter_map(|(i, request)| {
                self.wait(request, deadline)
                    .is_err()
                    .then(|| (i + 1).to_string())
            })
            .collect();
        missing.join(", ")
    }

    /// Rank 0 receives every rank's `mine` (all of the same length), in rank
    /// order, and names the ranks that do not send within the time limit;
    /// the other ranks send and get `None`.
    fn gather_to_root<T: Equivalence + Copy + Default + 'static>(
        &self,
        mine: Vec<T>,
        what: &str,
    ) -> Result<Option<Vec<Vec<T>>>> {
        let (rank, size) = (self.rank_index(), self.ranks());
        let deadline = Instant::now() + self.timeout;
        if rank != 0 {
            let (lent, buf) = Lent::new(mine);
            let request = self.world.process_at_rank(0).immediate_send_with_tag(
                StaticScope,
                &*buf,
                TAG_GATHER,
            );
            if self.wait(request, deadline).is_err() {
                return Err(self.timed_out(format!(
                    "rank {rank} of {size} waited to hand rank 0 its part of {what}, but rank 0 \
                     did not take it (it died, failed or hangs)"
                )));
            }
            // SAFETY: the send completed.
            drop(unsafe { lent.reclaim() });
            return Ok(None);
        }
        let len = mine.len();
        let mut lents = Vec::with_capacity(size - 1);
        let mut requests = Vec::with_capacity(size - 1);
        for r in 1..size {
            let (lent, buf) = Lent::new(vec![T::default(); len]);
            requests.push(
                self.world
                    .process_at_rank(r as i32)
                    .immediate_receive_into_with_tag(StaticScope, buf, TAG_GATHER),
            );
            lents.push(lent);
        }
        let missing = self.wait_all(requests, deadline);
        if !missing.is_empty() {
            return Err(self.timed_out(format!(
                "rank 0 of {size} waited for {what}, but rank {missing} never arrived (it died, \
                 failed or hangs)"
            )));
        }
        let mut parts = vec![mine];
        // SAFETY: every receive completed.
        parts.extend(lents.into_iter().map(|lent| unsafe { lent.reclaim() }));
        Ok(Some(parts))
    }

    /// Every rank receives rank 0's `values` (`Some` on rank 0; the others
    /// give the length they expect, `None` when they cannot know it).
    fn scatter_from_root<T: Equivalence + Copy + Default + 'static>(
        &self,
        values: Option<Vec<T>>,
        len: usize,
        tag: i32,
        what: &str,
    ) -> Result<Vec<T>> {
        let (rank, size) = (self.rank_index(), self.ranks());
        let deadline = Instant::now() + self.timeout;
        if rank == 0 {
            // One buffer, read by every send.
            let (lent, buf) = Lent::new(values.unwrap_or_default());
            let shared: &'static [T] = buf;
            let requests: Vec<_> = (1..size)
                .map(|r| {
                    self.world
                        .process_at_rank(r as i32)
                        .immediate_send_with_tag(StaticScope, shared, tag)
                })
                .collect();
            let missing = self.wait_all(requests, deadline);
            if !missing.is_empty() {
                return Err(self.timed_out(format!(
                    "rank 0 of {size} waited to hand out {what}, but rank {missing} did not take \
                     it (it died, failed or hangs)"
                )));
            }
            // SAFETY: every send completed.
            let values = unsafe { lent.reclaim() };
            return Ok(values);
        }
        let (lent, buf) = Lent::new(vec![T::default(); len]);
        let request = self
            .world
            .process_at_rank(0)
            .immediate_receive_into_with_tag(StaticScope, buf, tag);
        if self.wait(request, deadline).is_err() {
            return Err(self.timed_out(format!(
                "rank {rank} of {size} waited for rank 0's {what}, but it did not arrive (rank 0 \
                 died, failed or hangs, or names the rank it waits for)"
            )));
        }
        // SAFETY: the receive completed.
        Ok(unsafe { lent.reclaim() })
    }

    /// The sum over the ranks, taken by rank 0 in rank order and handed to
    /// every rank, so that every rank holds the same bits.
    fn all_reduce_sum<T>(&self, values: &mut [T], what: &str) -> Result<()>
    where
        T: Equivalence + Copy + Default + std::ops::AddAssign + 'static,
    {
        let sum = self.gather_to_root(values.to_vec(), what)?.map(|parts| {
            let mut sum = parts[0].clone();
            for part in &parts[1..] {
                sum.iter_mut().zip(part).for_each(|(s, x)| *s += *x);
            }
            sum
        });
        let sum = self.scatter_from_root(sum, values.len(), TAG_RESULT, what)?;
        values.copy_from_slice(&sum);
        Ok(())
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank_index()
    }

    fn size(&self) -> usize {
        self.ranks()
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32], what: &str) -> Result<()> {
        self.all_reduce_sum(values, what)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64], what: &str) -> Result<()> {
        self.all_reduce_sum(values, what)
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, what: &str) -> Result<()> {
        // The gather is every rank's check-in, so that rank 0 names a rank
        // that does not arrive.
        self.gather_to_root(vec![0u8], what)?;
        let root = self.rank_index() == 0;
        let len =
            self.scatter_from_root(root.then(|| vec![bytes.len() as u64]), 1, TAG_LENGTH, what)?[0];
        let len = usize::try_from(len).map_err(|_| {
            Error::Distributed(format!("{what}: rank 0 sent a length of {len} bytes"))
        })?;
        let mine = root.then(|| std::mem::take(bytes));
        *bytes = self.scatter_from_root(mine, len, TAG_RESULT, what)?;
        Ok(())
    }
}
