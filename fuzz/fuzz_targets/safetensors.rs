//! safetensors tensor files (fixtures, graphs, weights): the header and every tensor.
#![no_main]
use idx_flow_fuzz::{MemoryBound, within};
use idx_flow_healpix::io::SafetensorsFile;
use libfuzzer_sys::fuzz_target;

const BOUND: MemoryBound = MemoryBound {
    factor: 16,
    base: 16 << 20,
};

fuzz_target!(|data: &[u8]| {
    within(data.len(), BOUND, || {
        if let Ok(file) = SafetensorsFile::from_bytes("t.safetensors", data.to_vec()) {
            let _ = file.header_metadata();
            for name in file.names() {
                let _ = file.shape(&name);
                let _ = file.tensor(&name);
                let _ = file.f32(&name);
                let _ = file.i64(&name);
            }
        }
    });
});
