//! Every case of the pdequinox fixtures as its own test:
//!
//! - `pdequinox::CASE`: a layer of `pdequinox.safetensors` (output, input
//!   gradient, every parameter gradient);
//! - `pdequinox_arch::NAME`: the parameter count and receptive field of an
//!   architecture of `pdequinox_archs_manifest.json`;
//! - `pdequinox_arch_parity::CASE`: a tiny network of `pdequinox_archs.safetensors`.
//!
//! Cases, sizes and arguments come from the manifests, so any fixture set of
//! the generators runs (`IDX_FLOW_FIXTURES`).
//!
//! `cargo test -p idx-flow-pde --test pdequinox_cases pdequinox::spectral_conv_2d`

mod archs;
mod layers;

use std::sync::Arc;

use idx_flow_testing::{fixtures, trials};

fn main() {
    let mut all = Vec::new();
    let layers = Arc::new(layers::file());
    for case in layers::cases(&layers) {
        let file = layers.clone();
        all.push(trials::case(
            format!("pdequinox::{}", case.name),
            move || layers::check_layer_case(&file, &case),
        ));
    }
    for (section, name, entry) in archs::architectures() {
        all.push(trials::case(
            format!("pdequinox_arch::{section}::{name}"),
            move || archs::check_count_and_field(&name, &entry),
        ));
    }
    let nets = Arc::new(archs::architectures_file());
    let manifest = fixtures::manifest("pdequinox_archs_manifest.json");
    for (name, entry) in manifest["cases"]
        .as_object()
        .expect("manifest has 'cases'")
        .clone()
    {
        let file = nets.clone();
        all.push(trials::case(
            format!("pdequinox_arch_parity::{name}"),
            move || archs::check_architecture_case(&file, &name, &entry),
        ));
    }
    trials::run(all)
}
