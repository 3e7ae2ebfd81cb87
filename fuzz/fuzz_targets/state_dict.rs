//! Weights: a PyTorch-style state dict in safetensors (a run's
//! `model.safetensors`, a checkpoint's, or one exported from PyTorch
//! idx_flow), loaded into an autoencoder that then runs a forward pass.
#![no_main]
use idx_flow_core::StateDict;
use idx_flow_core::state_dict::load_state_dict;
use idx_flow_fuzz::{MemoryBound, within};
use idx_flow_healpix::io::SafetensorsFile;
use libfuzzer_sys::fuzz_target;

// The model (a few kB of weights) and its activations are the base.
const BOUND: MemoryBound = MemoryBound {
    factor: 16,
    base: 64 << 20,
};

fuzz_target!(|data: &[u8]| {
    let device = burn::tensor::Device::default();
    let model = idx_flow_fuzz::models::tiny_autoencoder(&device);
    within(data.len(), BOUND, || {
        let Ok(file) = SafetensorsFile::from_bytes("model.safetensors", data.to_vec()) else {
            return;
        };
        let Ok(sd) = StateDict::from_safetensors(&file, "") else {
            return;
        };
        if let Ok(model) = load_state_dict(model, &sd) {
            let x = idx_flow_fuzz::models::tiny_input(&device);
            let _ = model.try_forward(x);
        }
    });
});
