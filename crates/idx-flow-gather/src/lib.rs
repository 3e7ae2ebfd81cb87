//! The fused gather kernels over connection graphs, on the CPU, on plain
//! slices.
//!
//! A connection graph lists for each of `N_out` output pixels the `k` input
//! pixels it reads (`indices`, row-major `[N_out, k]`), optionally with a
//! weight per edge. On inputs `x` `[B, N_in, C]`:
//!
//! - [`contract_forward`]: `Y[b,p,f] = bias[f] + Σ_j Σ_c w[p,j]·X[b, idx[p,j], c]·K[j·C + c, f]`
//!   (idx_flow's `SpatialConv`), with [`contract_grad_input`] and
//!   [`contract_grad_kernel`];
//! - [`sum_forward`]: `Y[b,p,c] = Σ_j w[p,j]·X[b, idx[p,j], c]`
//!   (`SpatialUpsampling`), with [`sum_grad_input`].
//!
//! Rows are cut into fixed tiles (their size depends on the problem, never on
//! the number of threads). Each tile gathers its neighbourhoods into a small
//! buffer that stays in cache, and `gemm` contracts it with the kernel; tiles
//! run in parallel on rayon's pool. The kernel gradient sums fixed groups of
//! tiles, then the groups in order; the input gradients own their input
//! pixels and gather through the [`ReverseGraph`]. Every sum therefore has a
//! fixed order: results are bitwise the same for any number of threads.
//!
//! Every function checks the slices against the [`GatherSizes`] (lengths,
//! index ranges, the reverse graph's form) and returns a [`GatherError`]
//! naming what does not fit: no input can make them panic or read out of
//! bounds. This crate has no burn in it: `idx-flow-kernels` wraps it as a
//! burn operation, the Python package calls it on numpy arrays.
//!
//! ```
//! use idx_flow_gather::{GatherSizes, ReverseGraph, contract_forward, contract_grad_input};
//!
//! // Two output pixels, each reading two of three input pixels; B = 1, C = 1, F = 1.
//! let indices = [0i64, 1, 1, 2];
//! let sizes = GatherSizes { batch: 1, n_in: 3, channels: 1, n_out: 2, k: 2 };
//! let x = [1.0f32, 10.0, 100.0];
//! let kernel = [1.0f32, 2.0]; // [k·C, F]
//! let y = contract_forward(&x, &indices, None, &kernel, Some(&[0.5]), sizes, 1)?;
//! assert_eq!(y, [21.5, 210.5]);
//!
//! let reverse = ReverseGraph::checked(&indices, 3, 2)?;
//! let dx = contract_grad_input(&[1.0, 1.0], &reverse.offsets, &reverse.edges, None, &kernel, sizes, 1)?;
//! assert_eq!(dx, [1.0, 3.0, 2.0]);
//! # Ok::<(), idx_flow_gather::GatherError>(())
//! ```

mod buffer;
mod check;
mod contract;
mod grad_input;
mod reverse;
mod sum;

pub use check::{GatherError, GatherSizes};
pub use contract::{contract_forward, contract_grad_kernel, with_channel_count};
pub use grad_input::contract_grad_input;
pub use reverse::ReverseGraph;
pub use sum::{sum_forward, sum_grad_input};
