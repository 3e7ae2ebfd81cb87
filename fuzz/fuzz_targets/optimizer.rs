//! The AdamW state of a checkpoint (`optimizer.bpk`, burn's burnpack),
//! loaded and then used for one optimiser step, as `--resume` does.
#![no_main]
use idx_flow_fuzz::{MemoryBound, scratch_file, within};
use idx_flow_train::train::optimizer_state::load_optimizer;
use libfuzzer_sys::fuzz_target;

const BOUND: MemoryBound = MemoryBound {
    factor: 16,
    base: 64 << 20,
};

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("optimizer.bpk", data);
    let device = burn::tensor::Device::default().autodiff();
    let model = idx_flow_fuzz::models::tiny_autoencoder(&device);
    within(data.len(), BOUND, || {
        if let Ok(optim) = load_optimizer(idx_flow_fuzz::models::adamw(), &path, &model) {
            let _ = idx_flow_fuzz::models::one_step(optim, model, &device);
        }
    });
});
