//! The training config (`--config run.json`), parsed and validated.
#![no_main]
use idx_flow_fuzz::{MemoryBound, within};
use idx_flow_train::train::TrainConfig;
use libfuzzer_sys::fuzz_target;

// serde_json's value tree takes tens of bytes per input byte.
const BOUND: MemoryBound = MemoryBound {
    factor: 64,
    base: 16 << 20,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    within(data.len(), BOUND, || {
        if let Ok(config) = TrainConfig::from_json(&text)
            && config.validate().is_ok()
        {
            let _ = config.model.latent_shape();
            let _ = config.data_options();
        }
    });
});
