//! Integration tests of idx_flow's layers: parity with idx_flow 0.2.1
//! (`layers.safetensors`), their own properties, and the fused kernels
//! against the reference path.

mod common;
mod fused_kernels;
mod parity;
mod properties;
