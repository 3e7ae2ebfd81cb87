//! How the fused kernels run: one [`KernelOptions`] value, with defaults,
//! that a program passes once with [`set_options`]. The library reads no
//! environment variable; the `idx-flow` command maps its own
//! (`IDX_FLOW_KERNELS`, `IDX_FLOW_TENSOR_CORES`, `IDX_FLOW_CUBE_TILING`) onto
//! these options.
//!
//! ```
//! use idx_flow_kernels::{CubeTiling, KernelOptions, KernelPath, options, set_options};
//!
//! assert_eq!(options(), KernelOptions::default());
//! let tiling: CubeTiling = "64,64,16,4,4".parse()?;
//! set_options(KernelOptions { tensor_cores: true, tiling: Some(tiling), ..KernelOptions::default() });
//! assert!(options().tensor_cores);
//! assert!("64,64,16,4".parse::<CubeTiling>().is_err());
//! # set_options(KernelOptions::default());
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use std::str::FromStr;
use std::sync::RwLock;

use crate::{Error, Result};

/// Which implementation the gather layers run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KernelPath {
    /// The fused backend operation (flex on the CPU, CubeCL on the GPU). Default.
    #[default]
    Fused,
    /// Plain tensor operations: `select` (a gathered copy), then `matmul`.
    Reference,
}

impl FromStr for KernelPath {
    type Err = Error;

    /// `fused` or `reference`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fused" => Ok(Self::Fused),
            "reference" => Ok(Self::Reference),
            _ => Err(Error::arg(
                "kernel path",
                format!("got '{s}', expected 'fused' or 'reference'"),
            )),
        }
    }
}

/// Tile sizes of the CubeCL (GPU) kernels: a `bm × bn` output tile per cube,
/// `tm × tn` register blocks per thread, stepping through the reduction `bk`
/// at a time. Written `bm,bn,bk,tm,tn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CubeTiling {
    /// Output rows of a cube's tile.
    pub bm: usize,
    /// Output columns of a cube's tile.
    pub bn: usize,
    /// Reduction step staged in shared memory.
    pub bk: usize,
    /// Rows of a thread's register block.
    pub tm: usize,
    /// Columns of a thread's register block.
    pub tn: usize,
}

impl CubeTiling {
    /// Threads of a cube: `(bm / tm)·(bn / tn)`.
    pub fn threads(&self) -> usize {
        (self.bm / self.tm) * (self.bn / self.tn)
    }

    /// Whether the kernels can divide their work by this tiling: the staging
    /// loops share each tile evenly among the threads, so each of `bm`, `bn`
    /// and `bk` divides the thread count, the tiles `bm·bk` and `bk·bn` are
    /// multiples of it, and the register blocks divide the tile.
    pub fn is_valid(&self) -> bool {
        let Self { bm, bn, bk, tm, tn } = *self;
        if [bm, bn, bk, tm, tn].contains(&0) || !bm.is_multiple_of(tm) || !bn.is_multiple_of(tn) {
            return false;
        }
        let threads = self.threads();
        (1..=1024).contains(&threads)
            && threads.is_multiple_of(bk)
            && threads.is_multiple_of(bm)
            && threads.is_multiple_of(bn)
            && (bm * bk).is_multiple_of(threads)
            && (bk * bn).is_multiple_of(threads)
    }

    /// Bytes of shared memory a kernel stages each step in: the A tile
    /// `[bk][bm + 1]` and the B tile `[bk][bn + 1]` of f32 (the input
    /// gradient's transposed B tile; the other kernels' is one column less).
    pub fn shared_bytes(&self) -> usize {
        std::mem::size_of::<f32>() * self.bk * (self.bm + 1 + self.bn + 1)
    }

    /// Whether a device with `max_shared` bytes of shared memory and
    /// `max_threads` threads a cube can launch the kernels with this tiling.
    pub fn fits(&self, max_shared: usize, max_threads: usize) -> bool {
        self.shared_bytes() <= max_shared && self.threads() <= max_threads
    }
}

impl FromStr for CubeTiling {
    type Err = Error;

    /// `bm,bn,bk,tm,tn`, valid as [`CubeTiling::is_valid`] says.
    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::arg(
                "CubeCL tiling",
                format!(
                    "got '{text}', expected bm,bn,bk,tm,tn with (bm/tm)·(bn/tn) threads \
                     (at most 1024), a multiple of bm, bn and bk"
                ),
            )
        };
        let v = text
            .split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        let [bm, bn, bk, tm, tn] = v[..] else {
            return Err(bad());
        };
        let tiling = Self { bm, bn, bk, tm, tn };
        if tiling.is_valid() {
            Ok(tiling)
        } else {
            Err(bad())
        }
    }
}

/// How the fused kernels run. The default is what the library was tuned for:
/// the fused path, scalar GPU kernels, tilings chosen per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KernelOptions {
    /// The path of gather layers built from now on (default: fused). A layer
    /// can still choose its own with `GraphIndices::with_path`.
    pub path: KernelPath,
    /// Whether the GPU gather-contractions (forward, kernel gradient, input
    /// gradient) may use tensor cores (cooperative matrices), where the
    /// device offers square ones (16×16×16 on NVIDIA) with f32 accumulators:
    /// f16 and bf16 tensors directly, f32 tensors split into two f16 halves
    /// per operand (three products, close to f32's precision, f32's range).
    /// Off by default: the path is checked against the reference on a
    /// software Vulkan device, but its speed on a GPU is not yet measured.
    /// The CPU is not affected.
    pub tensor_cores: bool,
    /// CubeCL tile sizes for every GPU kernel, replacing the choice by shape
    /// (for tuning on a new device). One that asks more shared memory or
    /// threads than the device has is ignored, with a warning once.
    pub tiling: Option<CubeTiling>,
}

static OPTIONS: RwLock<KernelOptions> = RwLock::new(KernelOptions {
    path: KernelPath::Fused,
    tensor_cores: false,
    tiling: None,
});

/// Sets the options of every fused kernel launched from now on, in every
/// thread of the process (the kernels run inside backend operations, which
/// take no options of their own).
pub fn set_options(options: KernelOptions) {
    *OPTIONS.write().unwrap_or_else(|e| e.into_inner()) = options;
}

/// The options in force ([`KernelOptions::default`] until [`set_options`]).
pub fn options() -> KernelOptions {
    *OPTIONS.read().unwrap_or_else(|e| e.into_inner())
}
