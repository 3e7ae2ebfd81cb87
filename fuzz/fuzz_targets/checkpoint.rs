//! A checkpoint's `state.json` and `checksums.json`, as `--resume` reads them.
//! The input is `state.json` then, after a two-byte length prefix, the
//! checksum file; an empty checksum part gets genuine checksums, so that the
//! state itself is parsed.
#![no_main]
use idx_flow_fuzz::{MemoryBound, scratch_dir, split_two, within};
use idx_flow_train::train::checkpoint::{
    CHECKPOINT_FILES, latest_intact_checkpoint, read_checkpoint,
};
use idx_flow_train::train::checksums::{CHECKSUMS_FILE, write_checksums};
use libfuzzer_sys::fuzz_target;

const BOUND: MemoryBound = MemoryBound {
    factor: 64,
    base: 16 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((state, checksums)) = split_two(data) else {
        return;
    };
    let root = scratch_dir().join("checkpoints");
    let dir = root.join("step-00000003");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), state).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
    std::fs::write(dir.join("optimizer.bpk"), b"moments").unwrap();
    if checksums.is_empty() {
        write_checksums(&dir, &CHECKPOINT_FILES).unwrap();
    } else {
        std::fs::write(dir.join(CHECKSUMS_FILE), checksums).unwrap();
    }
    within(data.len(), BOUND, || {
        let _ = read_checkpoint(&dir);
        let _ = latest_intact_checkpoint(&root);
    });
});
