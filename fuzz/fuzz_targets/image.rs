//! PNG and JPEG equirectangular images (`--data earth.jpg`).
#![no_main]
use idx_flow_fuzz::{MemoryBound, within};
use idx_flow_train::data::EquirectImage;
use libfuzzer_sys::fuzz_target;

// Compressed: the decoder refuses images of more than
// `EquirectImage::MAX_PIXELS_PER_BYTE` pixels per input byte; each holds up to
// 6 bytes decoded (RGB16) and 12 bytes of float32, and a converted copy.
const BOUND: MemoryBound = MemoryBound {
    factor: 24 * EquirectImage::MAX_PIXELS_PER_BYTE,
    base: 32 << 20,
};

fuzz_target!(|data: &[u8]| {
    within(data.len(), BOUND, || {
        let _ = EquirectImage::decode(data, "earth.png".as_ref());
    });
});
