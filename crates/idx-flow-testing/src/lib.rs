//! Test support shared by the idx-flow crates (a development dependency only).
//!
//! - [`fixtures`]: where the reference data is (`IDX_FLOW_FIXTURES`, or the
//!   workspace's `fixtures/`), and its manifests.
//! - [`bench`](mod@bench): median wall times for the benchmarks.
//! - [`compare`] (feature `compare`, on by default; needs burn): our tensors
//!   and gradients against a reference library's.
//! - [`rng`]: a small deterministic generator for test data.
//! - [`threads`]: a computation on a rayon pool of a given size.
//! - [`trials`]: each fixture case as its own named test.

pub mod bench;
#[cfg(feature = "compare")]
pub mod compare;
pub mod fixtures;
pub mod rng;
pub mod threads;
pub mod trials;
