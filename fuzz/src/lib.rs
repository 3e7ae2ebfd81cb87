//! The harness shared by the fuzz targets: every input is measured for the
//! memory it makes the reader allocate, and written to a scratch file when
//! the reader takes a path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the bytes alive and their peak, over all threads.
pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// How much a reader may allocate for an input of `len` bytes:
/// `factor · len + base`. The base covers fixed costs (a model, decoder
/// tables, thread-local buffers); the factor the decoded values (four bytes
/// of f32 per byte of a byte-sized column, for instance).
#[derive(Clone, Copy, Debug)]
pub struct MemoryBound {
    /// Bytes allowed per input byte.
    pub factor: usize,
    /// Bytes allowed whatever the input.
    pub base: usize,
}

/// Runs `read` and panics (a finding) when the peak of the bytes it
/// allocated exceeds `bound` for an input of `len` bytes.
pub fn within<R>(len: usize, bound: MemoryBound, read: impl FnOnce() -> R) -> R {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = read();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(start);
    let allowed = bound.factor.saturating_mul(len).saturating_add(bound.base);
    assert!(
        peak <= allowed,
        "allocated {peak} bytes for a {len}-byte input, more than {} × {len} + {} = {allowed}",
        bound.factor,
        bound.base
    );
    out
}

/// A directory of this process for scratch files (in /dev/shm when there is
/// one, so that writing each input costs no disk).
pub fn scratch_dir() -> PathBuf {
    let root = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = root.join(format!("idx-flow-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cannot create the fuzzer's scratch directory");
    dir
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("cannot write a scratch file");
    path
}

/// Splits `data` into two parts: the first two bytes (little-endian) give the
/// length of the first part, the rest is the second (for targets that read
/// two files, such as a zarr array's metadata and one of its chunks).
pub fn split_two(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = u16::from_le_bytes(*len) as usize;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Joins two parts as [`split_two`] reads them (for writing seeds).
pub fn join_two(first: &[u8], second: &[u8]) -> Vec<u8> {
    let mut out = (first.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(first);
    out.extend_from_slice(second);
    out
}

/// A small autoencoder and what it takes, for the targets that load weights
/// and optimiser states into a model (the same code paths as a full-size one).
pub mod models {
    use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
    use burn::tensor::{Device, Tensor, TensorData};
    use idx_flow_train::models::{AutoencoderConfig, HealpixAutoencoder};

    /// nside 4 → 2, widths [4], latent 2 channels, 3 input channels, seed 7.
    pub fn tiny_autoencoder(device: &Device) -> HealpixAutoencoder {
        idx_flow_core::init::with_seed(7, || {
            AutoencoderConfig::new()
                .with_nside(4)
                .with_widths(vec![4])
                .with_latent_channels(2)
                .init(device)
        })
        .expect("the tiny autoencoder's config is valid")
    }

    /// An input `[1, 192, 3]` for [`tiny_autoencoder`].
    pub fn tiny_input(device: &Device) -> Tensor<3> {
        let values: Vec<f32> = (0..192 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
        Tensor::from_data(TensorData::new(values, [1, 192, 3]), device)
    }

    /// The training job's optimiser (AdamW, default settings).
    pub fn adamw() -> ModuleOptimizer {
        AdamWConfig::new().init()
    }

    /// One optimiser step of the mean-square reconstruction loss.
    pub fn one_step(
        mut optim: ModuleOptimizer,
        model: HealpixAutoencoder,
        device: &Device,
    ) -> (HealpixAutoencoder, ModuleOptimizer) {
        let x = tiny_input(device);
        let loss = (model.forward(x.clone()) - x).square().mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(1e-3, model, grads);
        (model, optim)
    }
}
