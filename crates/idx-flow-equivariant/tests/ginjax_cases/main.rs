//! Every layer case of `ginjax.safetensors` (ginjax 0.1.8, JAX) as its own
//! test, `ginjax::CASE`: outputs and gradients of every block. Cases, keys
//! and the filter side M come from the manifest and the file, so any fixture
//! set of `make_ginjax.py` runs (`IDX_FLOW_FIXTURES`).
//!
//! `cargo test -p idx-flow-equivariant --test ginjax_cases ginjax::conv_contract_2d`

mod layers;

use std::sync::Arc;

use idx_flow_testing::trials;

fn main() {
    let file = Arc::new(layers::file());
    let trials = layers::cases(&file)
        .into_iter()
        .map(|case| {
            let file = file.clone();
            trials::case(format!("ginjax::{}", case.name), move || {
                layers::check_layer_case(&file, &case)
            })
        })
        .collect();
    trials::run(trials)
}
