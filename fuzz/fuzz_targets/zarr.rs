//! A zarr v3 array of maps (`--data store.zarr`): the input is its
//! `zarr.json` then, after a two-byte length prefix, the bytes of its first
//! chunk; every sample is read.
#![no_main]
use idx_flow_fuzz::{MemoryBound, scratch_dir, split_two, within};
use idx_flow_train::data::open_maps;
use libfuzzer_sys::fuzz_target;

// Chunks may be gzip- or zstd-compressed: the reader holds one sample,
// whose size the metadata declares; the bound is on what a sample can be.
const BOUND: MemoryBound = MemoryBound {
    factor: 8 * 1032,
    base: 64 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((metadata, chunk)) = split_two(data) else {
        return;
    };
    let dir = scratch_dir().join("maps.zarr");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("c/0/0")).unwrap();
    std::fs::write(dir.join("zarr.json"), metadata).unwrap();
    std::fs::write(dir.join("c/0/0/0"), chunk).unwrap();
    within(data.len(), BOUND, || {
        if let Ok(reader) = open_maps(dir.to_str().unwrap(), false) {
            let len = reader.grid().npix() as usize * reader.channels();
            let mut sample = vec![0f32; len];
            for t in 0..reader.samples().min(4) {
                let _ = reader.read(t, &mut sample);
            }
        }
    });
});
