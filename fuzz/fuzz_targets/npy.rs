//! `.npy` maps, as `--data maps.npy` reads them: the streaming reader (one
//! sample at a time) and the whole-file reader of `idx-flow plot`.
#![no_main]
use idx_flow_fuzz::{MemoryBound, scratch_file, within};
use idx_flow_train::data::{HealpixMaps, open_maps};
use libfuzzer_sys::fuzz_target;

// Decoded float32 is at most 4 bytes per input byte (int8 / uint8 data).
const BOUND: MemoryBound = MemoryBound {
    factor: 8,
    base: 16 << 20,
};

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("maps.npy", data);
    within(data.len(), BOUND, || {
        if let Ok(reader) = open_maps(path.to_str().unwrap(), false) {
            let mut sample = vec![0f32; reader.grid().npix() as usize * reader.channels()];
            for t in 0..reader.samples().min(4) {
                let _ = reader.read(t, &mut sample);
            }
        }
        let _ = HealpixMaps::open(&path, true);
    });
});
