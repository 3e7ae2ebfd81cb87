//! Every layer case of `layers.safetensors` (idx_flow 0.2.1, PyTorch) as its
//! own test, `idx_flow::CASE`: output, input gradient and every parameter
//! gradient of `sum(output * output_cotangent)`, and the running statistics
//! of batch norms, against idx_flow. The cases come from `manifest.json`, so
//! any fixture set of `make_fixtures.py` runs (`IDX_FLOW_FIXTURES`).
//!
//! `cargo test -p idx-flow-nn --test idx_flow_cases idx_flow::spatial_conv`

// The suite's helpers (the manifest's cases, the grids); not all are used here.
#[allow(dead_code)]
#[path = "../suite/common.rs"]
mod common;
mod parity;

use std::sync::Arc;

use idx_flow_testing::trials;

fn main() {
    let file = Arc::new(common::layers_file());
    let trials = common::cases(&file)
        .into_iter()
        .map(|case| {
            let file = file.clone();
            trials::case(format!("idx_flow::{}", case.name), move || {
                parity::check_case(&file, &case)
            })
        })
        .collect();
    trials::run(trials)
}
