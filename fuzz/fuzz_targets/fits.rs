//! FITS maps in healpy's `write_map` layout.
#![no_main]
use idx_flow_fuzz::{MemoryBound, within};
use idx_flow_train::data::fits::read_healpix_fits_bytes;
use libfuzzer_sys::fuzz_target;

// A byte column (TFORM B) decodes to 4 bytes of float32 per byte.
const BOUND: MemoryBound = MemoryBound {
    factor: 8,
    base: 16 << 20,
};

fuzz_target!(|data: &[u8]| {
    within(data.len(), BOUND, || {
        let _ = read_healpix_fits_bytes(data, "map.fits".as_ref());
    });
});
