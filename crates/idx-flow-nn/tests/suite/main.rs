//! Integration tests of idx_flow's layers: their own properties, and the
//! fused kernels against the reference path. Parity with idx_flow 0.2.1, case
//! by case, is the `idx_flow_cases` target.

mod common;
mod fused_kernels;
mod properties;
