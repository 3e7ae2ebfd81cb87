//! Data-parallel training over several processes: each rank holds a replica
//! of the model, trains on its shard of every batch, and the ranks sum their
//! gradients before each optimiser step, so that every replica takes the same
//! step.
//!
//! The ranks talk through a [`Collective`]: `mpi::MpiWorld` (the `mpi`
//! feature) across processes and machines, or [`LocalGroup`] across
//! threads of one process (tests, and trying a distributed configuration on
//! one machine). [`crate::train::train`] takes one in
//! [`TrainOptions::collective`](crate::train::TrainOptions::collective).
//!
//! What a rank does, against the single-process trainer with `--workers P·W`
//! (`P` ranks of `W` workers each):
//! - every rank draws the same seeded plan of batches and renders only its
//!   contiguous share, `batch / P` samples (the batch must divide evenly);
//! - rank 0's initial weights (or its checkpoint) are broadcast;
//! - each step, the ranks agree on the number of valid values in the batch
//!   (masked maps) and on whether to stop (an interrupt), then sum their
//!   gradients (flattened in the model's parameter order into buckets of 4 Mi
//!   values) and losses;
//! - batch normalisation is never reduced across ranks, as it is never
//!   shared across the single-process trainer's workers: during training the
//!   running statistics are frozen and each worker normalises with its own
//!   shard's batch statistics; after training, rank 0 sets them exactly from
//!   held-back batches (`precise_batch_norm`), as the single process does;
//! - only rank 0 writes (checkpoints, pictures, `metrics.json`), and only
//!   rank 0 evaluates.
//!
//! Every exchange has a time limit: a rank that stops answering ends the run
//! with [`Error::Timeout`](crate::Error::Timeout) naming it, never a silent
//! hang.

mod exchange;
mod local;
#[cfg(feature = "mpi")]
pub mod mpi;

pub use local::LocalGroup;

pub(crate) use exchange::{
    all_reduce_gradients, broadcast_bytes_from_root, broadcast_parameters, check_same_run,
};

use crate::Result;

/// The operations the ranks of a data-parallel run perform together. Every
/// rank calls the same operations in the same order; each returns an error
/// (rather than waiting for ever) when another rank does not join it within
/// the implementation's time limit. `what` names the exchange in errors, e.g.
/// "step 7's gradients". A rank calls them from one thread (MPI is
/// initialised for that), so the trait asks for neither `Send` nor `Sync`.
pub trait Collective {
    /// This process's rank, `0..size()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn size(&self) -> usize;

    /// Replaces `values` on every rank with the element-wise sum of all
    /// ranks' `values` (the same length on every rank). Every rank receives
    /// the same sums.
    fn all_reduce_sum_f32(&self, values: &mut [f32], what: &str) -> Result<()>;

    /// [`all_reduce_sum_f32`](Self::all_reduce_sum_f32) for `f64`.
    fn all_reduce_sum_f64(&self, values: &mut [f64], what: &str) -> Result<()>;

    /// Replaces `bytes` on every rank with rank 0's `bytes` (any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, what: &str) -> Result<()>;
}

/// The number of ranks an MPI launcher (mpirun, mpiexec, srun with PMI) says
/// this process is one of, if one started it. These variables are set for
/// each process a launcher starts (not, like `SLURM_NTASKS`, for a whole
/// allocation in which a batch script may run a single process). Needs no
/// MPI library, so that a build without the `mpi` feature can tell it was
/// started as one of several ranks.
pub fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}
