//! How the CubeCL kernels tile their work: the tile sizes chosen by shape
//! (or taken from the options), and the device functions every kernel
//! shares (register-block products, tile stores, staged kernel rows, the
//! reverse-graph cursors of the input gradients).

use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// The tile sizes, chosen by shape below.
pub(super) use crate::CubeTiling as Tiling;

impl Tiling {
    /// Narrower column tiles for few output features, so that small `F`
    /// (5, 16, 32) does not leave most of a 64-wide tile idle. Every choice
    /// has 256 threads, a multiple of `bk`, `bm` and `bn`.
    ///
    /// [`KernelOptions::tiling`](crate::KernelOptions::tiling) replaces the
    /// choice for every kernel where the device of `on` can launch it.
    pub(super) fn for_columns(n: usize, on: &CubeTensor) -> Self {
        if let Some(tiling) = Self::from_options(on) {
            return tiling;
        }
        if n > 32 {
            Self {
                bm: 64,
                bn: 64,
                bk: 16,
                tm: 4,
                tn: 4,
            }
        } else if n > 16 {
            Self {
                bm: 128,
                bn: 32,
                bk: 16,
                tm: 8,
                tn: 2,
            }
        } else {
            Self {
                bm: 128,
                bn: 16,
                bk: 16,
                tm: 8,
                tn: 1,
            }
        }
    }

    /// The forward's tiling: for more than 32 features, 8×8 register blocks
    /// on a 128×64 tile (128 threads). Measured on an H100 (Vulkan) they make
    /// the forward 14-22% faster than 4×4 blocks, while the two gradient
    /// kernels, which stage more per step, are slower with them.
    pub(super) fn forward(n: usize, on: &CubeTensor) -> Self {
        match Self::from_options(on) {
            Some(tiling) => tiling,
            None if n > 32 => Self {
                bm: 128,
                bn: 64,
                bk: 16,
                tm: 8,
                tn: 8,
            },
            None => Self::for_columns(n, on),
        }
    }

    /// The tiling of the [`options`](crate::options), where the device of `on`
    /// can launch it. A tiling that passes [`Tiling::is_valid`] may still be
    /// too large for a device (Mesa's software Vulkan has 32 KiB of shared
    /// memory, less than `128,128,32,8,8` asks): it is then ignored, with a
    /// warning once, rather than failing at the launch.
    pub(super) fn from_options(on: &CubeTensor) -> Option<Self> {
        let tiling = crate::options().tiling?;
        let hardware = &on.client.properties().hardware;
        let (max_shared, max_threads) = (
            hardware.max_shared_memory_size,
            hardware.max_units_per_cube as usize,
        );
        if tiling.fits(max_shared, max_threads) {
            return Some(tiling);
        }
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            let Self { bm, bn, bk, tm, tn } = tiling;
            eprintln!(
                "idx-flow: the CubeCL tiling {bm},{bn},{bk},{tm},{tn} is ignored on this device: \
                 it needs {} bytes of shared memory and {} threads a cube, the device has \
                 {max_shared} bytes and {max_threads} threads",
                tiling.shared_bytes(),
                tiling.threads()
            );
        });
        None
    }
}

/// `acc[i·tn + jn] += Σ_t A[t][ty + i·bm/tm]·B[t][tx + jn·bn/tn]` over one
/// staged `bk` step. `a_s` is the A tile stored `[bk][bm + 1]` (the padding
/// keeps the transposed stores free of bank conflicts), `b_s` the B tile
/// `[bk][b_row]` with `b_row` = `bn`, or `bn + 1` where it too is stored
/// transposed. Rows and columns of a thread are strided by the thread grid,
/// so a warp reads consecutive shared addresses and writes consecutive
/// output columns.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn tile_fma(
    a_s: &Shared<[f32]>,
    b_s: &Shared<[f32]>,
    acc: &mut Array<f32>,
    tx: usize,
    ty: usize,
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] bk: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
    #[comptime] b_row: usize,
) {
    let mut a_reg = Array::<f32>::new(tm);
    let mut b_reg = Array::<f32>::new(tn);
    #[unroll]
    for t in 0..bk {
        #[unroll]
        for i in 0..tm {
            a_reg[i] = a_s[t * (bm + 1) + ty + i * (bm / tm)];
        }
        #[unroll]
        for jn in 0..tn {
            b_reg[jn] = b_s[t * b_row + tx + jn * (bn / tn)];
        }
        #[unroll]
        for i in 0..tm {
            #[unroll]
            for jn in 0..tn {
                acc[i * tn + jn] += a_reg[i] * b_reg[jn];
            }
        }
    }
}

/// Writes a thread's `tm × tn` accumulator block of the `bm × bn` tile at
/// `(m0, n0)` into the row-major `[rows, cols]` matrix that starts at `base`
/// in `out` (skipping the block when the cube is not `active`, and elements
/// outside the matrix).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn store_tile<F: Float>(
    out: &mut Tensor<F>,
    acc: &Array<f32>,
    base: usize,
    m0: usize,
    n0: usize,
    rows: usize,
    cols: usize,
    active: bool,
    tx: usize,
    ty: usize,
    #[comptime] bm: usize,
    #[comptime] bn: usize,
    #[comptime] tm: usize,
    #[comptime] tn: usize,
) {
    #[unroll]
    for i in 0..tm {
        let row = m0 + ty + i * (bm / tm);
        #[unroll]
        for jn in 0..tn {
            let col = n0 + tx + jn * (bn / tn);
            if active && row < rows && col < cols {
                out[base + row * cols + col] = F::cast_from(acc[i * tn + jn]);
            }
        }
    }
}

/// Stages the B tile of an input gradient, `Kᵀ` of one slot: element
/// `(t, n)` is `K[k_row0 + n0 + n, f]` for the thread's reduction row `t =
/// b_t` (feature `f`, present when `valid`) and channels `n = b_n +
/// s·b_stride`, stored transposed `[bk][bn + 1]`. Neighbouring threads read
/// neighbouring `f` of one kernel row.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn stage_kernel_transposed<F: Float>(
    kernel: &Tensor<F>,
    b_s: &mut Shared<[f32]>,
    k_row0: usize,
    f: usize,
    valid: bool,
    n0: usize,
    channels: usize,
    features: usize,
    b_t: usize,
    b_n: usize,
    #[comptime] b_loads: usize,
    #[comptime] b_stride: usize,
    #[comptime] bn: usize,
) {
    #[unroll]
    for s in 0..b_loads {
        let n = b_n + s * b_stride;
        let c = n0 + n;
        let mut v = 0.0f32;
        if valid && c < channels {
            v = f32::cast_from(kernel[(k_row0 + c) * features + f]);
        }
        b_s[b_t * (bn + 1) + n] = v;
    }
}

/// Points cursor `l` of a thread's input-gradient rows at row `row` of
/// `[B·N_in]` (at nothing where `valid` is false): its batch's first `dY`
/// row, the range of the pixel's reverse edges not yet passed
/// (`cur[l]..end[l]`) and the slot of the first (`k` when none is left).
/// See [`slot_sum`].
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn start_row_cursor<I: Numeric>(
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    dy_base: &mut Array<usize>,
    cur: &mut Array<usize>,
    end: &mut Array<usize>,
    next_slot: &mut Array<usize>,
    l: usize,
    row: usize,
    valid: bool,
    n_in: usize,
    n_out: usize,
    k: usize,
) {
    let b = row / n_in;
    dy_base[l] = b * n_out;
    cur[l] = 0;
    end[l] = 0;
    next_slot[l] = k;
    if valid {
        let i = row - b * n_in;
        cur[l] = usize::cast_from(rev_offsets[i]);
        end[l] = usize::cast_from(rev_offsets[i + 1]);
        if cur[l] < end[l] {
            let e = usize::cast_from(rev_edges[cur[l]]);
            next_slot[l] = e - (e / k) * k;
        }
    }
}

/// Entry `(j, f)` of the input gradient's A for the row under cursor `l`:
/// `Σ w[p,j]·dY[b,p,f]` over the pixel's slot-`j` edges, in edge order. A
/// pixel's reverse edges are ordered by slot and a thread's `j` only moves
/// forward, so the cursor passes earlier slots' edges once and never
/// searches.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(super) fn slot_sum<F: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    dy_base: &Array<usize>,
    cur: &mut Array<usize>,
    end: &Array<usize>,
    next_slot: &mut Array<usize>,
    l: usize,
    j: usize,
    f: usize,
    k: usize,
    features: usize,
    #[comptime] weighted: bool,
) -> f32 {
    let mut v = 0.0f32;
    while next_slot[l] < j {
        cur[l] += 1;
        next_slot[l] = k;
        if cur[l] < end[l] {
            let e = usize::cast_from(rev_edges[cur[l]]);
            next_slot[l] = e - (e / k) * k;
        }
    }
    if next_slot[l] == j {
        let mut q = cur[l];
        let mut more = true;
        while more {
            let e = usize::cast_from(rev_edges[q]);
            let p = e / k;
            let mut g = f32::cast_from(dy[(dy_base[l] + p) * features + f]);
            if weighted {
                g *= f32::cast_from(weights[e]);
            }
            v += g;
            q += 1;
            more = false;
            if q < end[l] {
                let e2 = usize::cast_from(rev_edges[q]);
                more = e2 - (e2 / k) * k == j;
            }
        }
    }
    v
}
