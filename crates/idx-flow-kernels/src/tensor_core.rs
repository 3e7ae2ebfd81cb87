//! The gather-contract on tensor cores (CubeCL's cooperative matrices,
//! `cmma`), for f16, bf16 and f32 tensors: forward, kernel gradient and
//! input gradient.
//!
//! Same tiling idea as the scalar forward in `cube.rs`, with `s` the edge of
//! the device's square fragments (16 on NVIDIA, 8 on Mesa's lavapipe): a cube
//! owns a `4s × 4s` tile of the `[B·N_out, F]` output (64 × 64) and steps
//! through the `k·C` reduction `2s` at a time, gathering the operand tile
//! from `X` through the indices into shared memory (in the tensors'
//! half-precision dtype, weighted in f32 first) beside the kernel tile. Four
//! planes (subgroups) each own a quarter of the output tile as 2 × 2
//! fragments and multiply with `cmma::execute`, accumulating in f32. The
//! accumulators go through shared memory to the output, where the bias is
//! added and the dtype cast.
//!
//! f32 tensors keep f32's precision and range although Vulkan's tensor
//! cores take no f32 (nor TF32) operands: each operand is scaled so that its
//! bound (the largest `|x|`, `|w|`, `|K|` or `|dY|`, reduced on the device;
//! for the input gradient's summed rows, times the row's edge count) becomes
//! 2¹³, split into two f16 halves `hi + lo` (22 significant bits),
//! and each step multiplies `hi·hi + hi·lo + lo·hi` into the f32
//! accumulators, which are divided by the scales at the end: three
//! tensor-core products for one, errors near f32's (checked to 1e-5 of the
//! largest entry against the f32 reference, with inputs from 10⁻⁶ to 3·10⁵).
//!
//! The kernel gradient (pass 1, row groups into f32 partials summed in group
//! order by the scalar pass 2) and the input gradient (per-slot products on
//! graphs that carry slot lists, one launch over every row and slot on the
//! others) use the same cube layout. Every
//! sum keeps a fixed order, so results are bitwise the same run to run.
//!
//! Off by default: it is tested against the reference on Mesa's software
//! Vulkan (`.ci/gpu-tests`), but not yet timed on a GPU. Turn it on with
//! [`KernelOptions::tensor_cores`](crate::KernelOptions::tensor_cores);
//! [`tensor_core_launches`](super::tensor_core_launches) tells whether it ran.
//! It runs only where the device lists `s × s × s` cooperative matrices for
//! the dtype with f32 accumulators and has one fixed plane size; elsewhere
//! the scalar forward runs.

use burn::backend::ops::FloatTensorOps;
use burn::tensor::DType;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::features::MmaConfig;

use super::cube::{slot_sum, start_row_cursor};
use cubecl::ir::{ElemType, FloatKind};
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

/// Planes per cube: a 2 × 2 grid of quarters of the output tile, each
/// 2 × 2 fragments.
const PLANES: u32 = 4;

/// How the tensor-core kernels run on a device: the plane size, the
/// fragment edge `s` (cooperative matrices `s × s × s`), the dtype the
/// operands are staged in, and whether each f32 operand is split into two
/// f16 halves.
#[derive(Clone, Copy, Debug)]
pub(super) struct Fragments {
    plane: u32,
    edge: usize,
    /// The operands' dtype on the tensor cores: the tensors' own for f16
    /// and bf16, f16 for f32 tensors.
    staged: ElemType,
    /// f32 tensors: every operand `v` is staged as `hi` (`v·scale` rounded
    /// to f16) and `lo = f16(v·scale − hi)`, and each step multiplies
    /// `hi·hi + hi·lo + lo·hi` (see [`put`] and [`split_scale`]).
    split: bool,
}

/// The settings of the tensor-core kernels on `t`'s device for `dtype`, or
/// `None` where it cannot run: the device must offer square cooperative
/// matrices of edge 16 (NVIDIA) or 8 (Mesa's lavapipe) with f32 accumulators
/// (f16 ones for f32 tensors), and one fixed plane size.
pub(super) fn fragments(t: &CubeTensor, dtype: DType) -> Option<Fragments> {
    let (kind, split) = match dtype {
        DType::F16 => (FloatKind::F16, false),
        DType::BF16 => (FloatKind::BF16, false),
        DType::F32 => (FloatKind::F16, true),
        _ => return None,
    };
    let offered = &t.client.features().matmul.cmma;
    let edge = [16u32, 8].into_iter().find(|&e| {
        offered.contains(&MmaConfig {
            a_type: ElemType::Float(kind),
            b_type: ElemType::Float(kind),
            cd_type: ElemType::Float(FloatKind::F32),
            m: e,
            n: e,
            k: e,
        })
    })? as usize;
    let hardware = &t.client.properties().hardware;
    let plane = hardware.plane_size_max;
    // The loaders give each thread one column of a `2s`-deep or `4s`-wide
    // operand tile, so the cube's thread count must be a multiple of `4s`;
    // planes must have one fixed size for UNIT_POS_Y to number them.
    let threads = plane as usize * PLANES as usize;
    (hardware.plane_size_min == plane && plane > 0 && threads.is_multiple_of(4 * edge)).then_some(
        Fragments {
            plane,
            edge,
            staged: ElemType::Float(kind),
            split,
        },
    )
}

/// The largest `|v|` of `t`, a one-element tensor on its device (what the
/// split f32 path scales its operands by; nothing is read back).
fn max_abs(t: &CubeTensor) -> CubeTensor {
    <CubeBackend as FloatTensorOps<CubeBackend>>::float_max_abs(t.clone())
}

/// The split path's operand bounds for a product of `a` (read through the
/// edge `weights` where `weighted`) and `b`: `[max|a|, max|w|, max|b|]`, the
/// kernels bounding a weighted entry by `max|a|·max|w|`. Without the split
/// they are not read, and `a` stands in for each.
fn split_bounds(
    fragments: Fragments,
    a: &CubeTensor,
    weights: &CubeTensor,
    weighted: bool,
    b: &CubeTensor,
) -> [CubeTensor; 3] {
    if !fragments.split {
        return [a.clone(), a.clone(), a.clone()];
    }
    let amax_a = max_abs(a);
    let amax_w = if weighted {
        max_abs(weights)
    } else {
        amax_a.clone()
    };
    [amax_a, amax_w, max_abs(b)]
}

/// Launches the tensor-core forward into `out` (`[B, N_out, F]`, contiguous,
/// in the inputs' dtype). The operands are contiguous, in `dtype`, as the
/// scalar forward's.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch(
    x: CubeTensor,
    indices: CubeTensor,
    weights: CubeTensor,
    kernel: CubeTensor,
    bias: CubeTensor,
    out: &CubeTensor,
    sizes: [usize; 5],
    weighted: bool,
    biased: bool,
    fragments: Fragments,
    dtypes: [ElemType; 2],
) {
    let [batch, n_in, channels, k, features] = sizes;
    let n_out = indices.meta.shape().dims::<2>()[0];
    let rows = batch * n_out;
    let tile = 4 * fragments.edge;
    let tiles_n = features.div_ceil(tile);
    let num_tiles = rows.div_ceil(tile) * tiles_n;
    let dim = CubeDim::new_2d(fragments.plane, PLANES);
    let count = calculate_cube_count_elemwise(&x.client, num_tiles * dim.num_elems() as usize, dim);
    let [amax_x, amax_w, amax_k] = split_bounds(fragments, &x, &weights, weighted, &kernel);
    super::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: every global read is bounded by the checks in the kernel (rows
    // < B·N_out, reduction columns < k·C, output columns < F) and by the
    // indices lying in 0..N_in, which the caller guarantees; shared-memory
    // fragments lie inside their tiles; the output is contiguous.
    unsafe {
        contract_cmma_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            indices.into_tensor_arg(),
            weights.into_tensor_arg(),
            kernel.into_tensor_arg(),
            bias.into_tensor_arg(),
            amax_x.into_tensor_arg(),
            amax_w.into_tensor_arg(),
            amax_k.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            n_in,
            n_out,
            channels,
            k,
            features,
            rows,
            tiles_n,
            num_tiles,
            weighted,
            biased,
            fragments.edge,
            fragments.split,
            fragments.dtypes(dtypes),
        )
    };
}

/// Launches pass 1 of the kernel gradient on tensor cores: cube `(group,
/// tile)` reduces rows `group·group_rows..` (at most `group_rows`, a multiple
/// of `2s`) of `gathered[row]ᵀ·dY[row]` into its f32 partial `[k·C, F]`
/// tile of `partials` (`[groups, k·C, F]`), as the scalar pass 1 does; the
/// caller adds the partials in group order.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch_grad_kernel_partials(
    x: CubeTensor,
    indices: CubeTensor,
    weights: CubeTensor,
    dy: CubeTensor,
    partials: &CubeTensor,
    sizes: [usize; 5],
    group_rows: usize,
    weighted: bool,
    fragments: Fragments,
    dtypes: [ElemType; 2],
) {
    let [batch, n_in, channels, k, features] = sizes;
    let n_out = indices.meta.shape().dims::<2>()[0];
    let rows = batch * n_out;
    let depth = k * channels;
    let tile = 4 * fragments.edge;
    let tiles_n = features.div_ceil(tile);
    let tiles = depth.div_ceil(tile) * tiles_n;
    let groups = rows.div_ceil(group_rows);
    let num_cubes = groups * tiles;
    let dim = CubeDim::new_2d(fragments.plane, PLANES);
    let count = calculate_cube_count_elemwise(&x.client, num_cubes * dim.num_elems() as usize, dim);
    let [amax_x, amax_w, amax_dy] = split_bounds(fragments, &x, &weights, weighted, &dy);
    super::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: reads are bounded by the checks in the kernel (rows < r_end ≤
    // B·N_out, gradient rows < k·C, columns < F) and by the indices lying in
    // 0..N_in; partial writes stay inside their group's [k·C, F] slice.
    unsafe {
        contract_grad_kernel_cmma_partials::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_tensor_arg(),
            indices.into_tensor_arg(),
            weights.into_tensor_arg(),
            dy.into_tensor_arg(),
            amax_x.into_tensor_arg(),
            amax_w.into_tensor_arg(),
            amax_dy.into_tensor_arg(),
            partials.clone().into_tensor_arg(),
            n_in,
            n_out,
            channels,
            k,
            features,
            rows,
            group_rows,
            tiles_n,
            tiles,
            num_cubes,
            weighted,
            fragments.edge,
            fragments.split,
            fragments.dtypes(dtypes),
        )
    };
}

impl Fragments {
    /// The output tile edge `4s` and the rows staged per step `2s` (the
    /// kernel gradient's row groups are multiples of it).
    pub(super) fn tile_and_step(self) -> (usize, usize) {
        (4 * self.edge, 2 * self.edge)
    }

    /// The kernels' dtypes `[tensors, staged operands, indices]` from the
    /// caller's `[tensors, indices]`.
    fn dtypes(self, [float, int]: [ElemType; 2]) -> [ElemType; 3] {
        [float, self.staged, int]
    }
}

/// Launches, for each kernel slot in order, the input gradient's per-slot
/// product on tensor cores into the f32 accumulator `dx` (`[B, N_in, C]`,
/// zeros to start with), over the graph's packed slot lists as the scalar
/// per-slot kernel does.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch_grad_input_by_slot(
    dy: &CubeTensor,
    rev_offsets: &CubeTensor,
    rev_edges: &CubeTensor,
    rev_slots: &CubeTensor,
    weights: &CubeTensor,
    kernel: &CubeTensor,
    dx: &CubeTensor,
    sizes: [usize; 6],
    weighted: bool,
    fragments: Fragments,
    dtypes: [ElemType; 2],
) {
    let [batch, n_in, n_out, channels, k, features] = sizes;
    let pairs = (rev_slots.meta.shape().dims::<1>()[0] - (k + 1)) / 2;
    let tile = 4 * fragments.edge;
    let tiles_n = channels.div_ceil(tile);
    // No slot reads more pixels than there are inputs, or outputs.
    let num_tiles = (batch * n_in.min(n_out)).div_ceil(tile) * tiles_n;
    let dim = CubeDim::new_2d(fragments.plane, PLANES);
    let count =
        calculate_cube_count_elemwise(&dy.client, num_tiles * dim.num_elems() as usize, dim);
    let [amax_dy, amax_w, amax_k] = split_bounds(fragments, dy, weights, weighted, kernel);
    for slot in 0..k {
        super::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the slot lists hold pixels in 0..N_in and edge positions in
        // 0..N_out·k (ReverseGraph::slot_rows of this graph); rows, features
        // and channels are checked in the kernel, and each launch writes a
        // pixel's row at most once.
        unsafe {
            contract_grad_input_slot_cmma_kernel::launch_unchecked(
                &dy.client,
                count.clone(),
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.clone().into_tensor_arg(),
                rev_edges.clone().into_tensor_arg(),
                rev_slots.clone().into_tensor_arg(),
                weights.clone().into_tensor_arg(),
                kernel.clone().into_tensor_arg(),
                amax_dy.clone().into_tensor_arg(),
                amax_w.clone().into_tensor_arg(),
                amax_k.clone().into_tensor_arg(),
                dx.clone().into_tensor_arg(),
                batch,
                n_in,
                n_out,
                channels,
                k,
                features,
                slot,
                k + 1,
                k + 1 + pairs,
                tiles_n,
                num_tiles,
                weighted,
                fragments.edge,
                fragments.split,
                fragments.dtypes(dtypes),
            )
        };
    }
}

/// Launches the input gradient on tensor cores for graphs without slot
/// lists: one launch over every input row and slot into `dx` (`[B, N_in, C]`,
/// contiguous, in the tensors' dtype), as the scalar
/// `contract_grad_input_kernel` does.
#[allow(clippy::too_many_arguments)]
pub(super) fn launch_grad_input(
    dy: CubeTensor,
    rev_offsets: CubeTensor,
    rev_edges: CubeTensor,
    weights: CubeTensor,
    kernel: CubeTensor,
    dx: &CubeTensor,
    sizes: [usize; 6],
    weighted: bool,
    fragments: Fragments,
    dtypes: [ElemType; 2],
) {
    let [batch, n_in, n_out, channels, k, features] = sizes;
    let rows = batch * n_in;
    let tile = 4 * fragments.edge;
    let tiles_n = channels.div_ceil(tile);
    let num_tiles = rows.div_ceil(tile) * tiles_n;
    let dim = CubeDim::new_2d(fragments.plane, PLANES);
    let threads = dim.num_elems() as usize;
    let count = calculate_cube_count_elemwise(&dy.client, num_tiles * threads, dim);
    let [amax_dy, amax_w, amax_k] = split_bounds(fragments, &dy, &weights, weighted, &kernel);
    // Each thread stages one column of the `4s × 2s` A tile in this many rows
    // (`fragments` makes the thread count a multiple of `4s`).
    let loads = (tile * 2 * fragments.edge).div_ceil(threads);
    super::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: reads follow the reverse graph, whose offsets lie in
    // 0..=N_out·k and whose edges lie in 0..N_out·k; rows < B·N_in, reduction
    // columns < k·F and channels < C are checked in the kernel.
    unsafe {
        contract_grad_input_cmma_kernel::launch_unchecked(
            &dy.client,
            count,
            dim,
            dy.clone().into_tensor_arg(),
            rev_offsets.into_tensor_arg(),
            rev_edges.into_tensor_arg(),
            weights.into_tensor_arg(),
            kernel.into_tensor_arg(),
            amax_dy.into_tensor_arg(),
            amax_w.into_tensor_arg(),
            amax_k.into_tensor_arg(),
            dx.clone().into_tensor_arg(),
            n_in,
            n_out,
            channels,
            k,
            features,
            rows,
            tiles_n,
            num_tiles,
            weighted,
            fragments.edge,
            loads,
            fragments.split,
            fragments.dtypes(dtypes),
        )
    };
}

/// One cube per `4s × 4s` output tile (`CUBE_POS = tile_m·tiles_n + tile_n`),
/// `s` the fragment edge; the reduction is staged `2s` deep.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_cmma_kernel<F: Float, H: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    bias: &Tensor<F>,
    amax_x: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_k: &Tensor<F>,
    out: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    rows: usize,
    tiles_n: usize,
    num_tiles: usize,
    #[comptime] weighted: bool,
    #[comptime] biased: bool,
    #[comptime] s: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    // Cubes past the last tile (the grid may be rounded up) redo the last
    // tile without writing it, so that no plane skips a barrier.
    let active = CUBE_POS < num_tiles;
    let tile = min(CUBE_POS, num_tiles - 1);
    let m0 = (tile / tiles_n) * tile_edge;
    let n0 = (tile % tiles_n) * tile_edge;
    let depth = k * channels;
    let threads = CUBE_DIM as usize;
    let tid = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let pm = plane / 2;
    let pn = plane % 2;

    let mut a_s = Shared::<[H]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[H]>::new_slice(comptime!(2 * s * 4 * s));
    let mut a_lo = Shared::<[H]>::new_slice(comptime!(low_len(4 * s * 2 * s, split)));
    let mut b_lo = Shared::<[H]>::new_slice(comptime!(low_len(2 * s * 4 * s, split)));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
    let mut a_scale = 1.0f32;
    let mut b_scale = 1.0f32;
    if split {
        let mut a_max = f32::cast_from(amax_x[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
        a_scale = split_scale(a_max);
        b_scale = split_scale(f32::cast_from(amax_k[0]));
    }
    // Per tile row: its batch's first input pixel and its first edge.
    let mut x_base = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut e_base = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut r = tid;
    while r < tile_edge {
        let row = m0 + r;
        let b = row / n_out;
        x_base[r] = u32::cast_from(b * n_in);
        e_base[r] = u32::cast_from((row - b * n_out) * k);
        r += threads;
    }

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);
    sync_cube();

    // A thread always stages column `a_t` of the operand tile, rows
    // `a_m, a_m + a_stride, …`; the column's (slot j, channel c) moves on by
    // the staged depth each step without a division.
    let a_t = tid % depth_step;
    let a_stride = threads / depth_step;
    let mut j = a_t / channels;
    let mut c = a_t - j * channels;
    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        let mut m = tid / depth_step;
        while m < tile_edge {
            let mut v = 0.0f32;
            if col < depth && m0 + m < rows {
                v = gathered(
                    x, indices, weights, x_base[m], e_base[m], j, c, channels, weighted,
                );
            }
            put(v, a_scale, &mut a_s, &mut a_lo, m * depth_step + a_t, split);
            m += a_stride;
        }
        stage_rows(
            kernel, &mut b_s, &mut b_lo, b_scale, k0, depth, n0, features, s, split,
        );
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        k0 += depth_step;
        c += depth_step;
        while c >= channels {
            c -= channels;
            j += 1;
        }
    }

    // The plane's quarter into the f32 tile, then bias, cast and bounds.
    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let row = m0 + q / tile_edge;
        let col = n0 + q % tile_edge;
        if active && row < rows && col < features {
            let mut v = c_s[q];
            if split {
                v = v / a_scale / b_scale;
            }
            if biased {
                v += f32::cast_from(bias[col]);
            }
            out[row * features + col] = F::cast_from(v);
        }
        q += threads;
    }
}

/// Pass 1 of the kernel gradient on tensor cores: the cube's `4s × 4s` tile
/// of `[k·C, F]` as `Σ_rows gathered[row]ᵀ·dY[row]` over its group's rows,
/// `2s` rows per step: the `4s × 2s` operand (gathered rows, transposed) is
/// staged from `X` through the indices, the `2s × 4s` one from `dY`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_grad_kernel_cmma_partials<F: Float, H: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    dy: &Tensor<F>,
    amax_x: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_dy: &Tensor<F>,
    partials: &mut Tensor<f32>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    rows: usize,
    group_rows: usize,
    tiles_n: usize,
    tiles: usize,
    num_cubes: usize,
    #[comptime] weighted: bool,
    #[comptime] s: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    // As in the forward: no early return ahead of the barriers.
    let active = CUBE_POS < num_cubes;
    let cube = min(CUBE_POS, num_cubes - 1);
    let group = cube / tiles;
    let tile = cube - group * tiles;
    let m0 = (tile / tiles_n) * tile_edge;
    let n0 = (tile % tiles_n) * tile_edge;
    let depth = k * channels;
    let r_begin = group * group_rows;
    let r_end = min(r_begin + group_rows, rows);
    let threads = CUBE_DIM as usize;
    let tid = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let pm = plane / 2;
    let pn = plane % 2;

    let mut a_s = Shared::<[H]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[H]>::new_slice(comptime!(2 * s * 4 * s));
    let mut a_lo = Shared::<[H]>::new_slice(comptime!(low_len(4 * s * 2 * s, split)));
    let mut b_lo = Shared::<[H]>::new_slice(comptime!(low_len(2 * s * 4 * s, split)));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
    let mut a_scale = 1.0f32;
    let mut b_scale = 1.0f32;
    if split {
        let mut a_max = f32::cast_from(amax_x[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
        a_scale = split_scale(a_max);
        b_scale = split_scale(f32::cast_from(amax_dy[0]));
    }
    // Per staged row: its batch's first input pixel and its first edge.
    let mut x_base = Shared::<[u32]>::new_slice(comptime!(2 * s));
    let mut e_base = Shared::<[u32]>::new_slice(comptime!(2 * s));

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);

    // A thread always stages gradient row `a_m` (one (j, c) pair) of the
    // operand tile, for staged rows `a_t, a_t + a_stride, …`.
    let a_m = tid % tile_edge;
    let a_stride = threads / tile_edge;
    let col = m0 + a_m;
    let col_ok = col < depth;
    let j = col / channels;
    let c = col - j * channels;

    let mut r0 = r_begin;
    while r0 < r_end {
        let mut t = tid;
        while t < depth_step {
            let row = min(r0 + t, rows - 1);
            let b = row / n_out;
            x_base[t] = u32::cast_from(b * n_in);
            e_base[t] = u32::cast_from((row - b * n_out) * k);
            t += threads;
        }
        sync_cube();
        let mut t = tid / tile_edge;
        while t < depth_step {
            let mut v = 0.0f32;
            if col_ok && r0 + t < r_end {
                v = gathered(
                    x, indices, weights, x_base[t], e_base[t], j, c, channels, weighted,
                );
            }
            put(v, a_scale, &mut a_s, &mut a_lo, a_m * depth_step + t, split);
            t += a_stride;
        }
        stage_rows(
            dy, &mut b_s, &mut b_lo, b_scale, r0, r_end, n0, features, s, split,
        );
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        r0 += depth_step;
    }

    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let base = group * depth * features;
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let m = m0 + q / tile_edge;
        let n = n0 + q % tile_edge;
        if active && m < depth && n < features {
            let mut v = c_s[q];
            if split {
                v = v / a_scale / b_scale;
            }
            partials[base + m * features + n] = v;
        }
        q += threads;
    }
}

/// The input gradient's product for one kernel slot on tensor cores:
/// `dX[b,i,c] += Σ_f A[(b,i), f]·K[j·C + c, f]` with
/// `A[(b,i), f] = Σ_{p : idx[p,j] = i} w[p,j]·dY[b,p,f]`, over the rows of the
/// slot's packed list (as the scalar per-slot kernel in `cube.rs`). The
/// cube's `4s` list rows are looked up once into shared memory; each step
/// stages `2s` features of A (summed over the row's slot edges) and of `Kᵀ`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_grad_input_slot_cmma_kernel<F: Float, H: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    rev_slots: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    amax_dy: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_k: &Tensor<F>,
    dx: &mut Tensor<f32>,
    batch: usize,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    slot: usize,
    pixels_at: usize,
    starts_at: usize,
    tiles_n: usize,
    num_tiles: usize,
    #[comptime] weighted: bool,
    #[comptime] s: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    let list_begin = usize::cast_from(rev_slots[slot]);
    let list_len = usize::cast_from(rev_slots[slot + 1]) - list_begin;
    let rows = batch * list_len;
    let tile = CUBE_POS;
    let m0 = (tile / tiles_n) * tile_edge;
    // Uniform for the whole cube: no plane waits at a barrier alone.
    if tile >= num_tiles || m0 >= rows {
        terminate!();
    }
    let n0 = (tile % tiles_n) * tile_edge;
    let threads = CUBE_DIM as usize;
    let tid = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let pm = plane / 2;
    let pn = plane % 2;

    let mut a_s = Shared::<[H]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[H]>::new_slice(comptime!(2 * s * 4 * s));
    let mut a_lo = Shared::<[H]>::new_slice(comptime!(low_len(4 * s * 2 * s, split)));
    let mut b_lo = Shared::<[H]>::new_slice(comptime!(low_len(2 * s * 4 * s, split)));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
    // Per tile row: the batch's first dY row, the pixel's first slot edge
    // and the end of its edges, and its dX row (all 0 past the list).
    let mut dy_base = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut first = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut end = Shared::<[u32]>::new_slice(comptime!(4 * s));
    let mut dx_row = Shared::<[u32]>::new_slice(comptime!(4 * s));
    // The split path scales each row of A (a sum of `dY` rows over the
    // row's slot edges) by its own bound: max|dY|·max|w| times its edges.
    let mut row_scale = Shared::<[f32]>::new_slice(comptime!(low_len(4 * s, split)));
    let mut b_scale = 1.0f32;
    let mut a_max = 1.0f32;
    if split {
        b_scale = split_scale(f32::cast_from(amax_k[0]));
        a_max = f32::cast_from(amax_dy[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
    }
    let mut r = tid;
    while r < tile_edge {
        let row = m0 + r;
        let mut base = 0usize;
        let mut f0 = 0usize;
        let mut e0 = 0usize;
        let mut out_row = 0usize;
        if row < rows {
            let b = row / list_len;
            let m = list_begin + row - b * list_len;
            let i = usize::cast_from(rev_slots[pixels_at + m]);
            base = b * n_out;
            f0 = usize::cast_from(rev_slots[starts_at + m]);
            e0 = usize::cast_from(rev_offsets[i + 1]);
            out_row = b * n_in + i;
        }
        dy_base[r] = u32::cast_from(base);
        first[r] = u32::cast_from(f0);
        end[r] = u32::cast_from(e0);
        dx_row[r] = u32::cast_from(out_row);
        if split {
            let mut edges = 0u32;
            let mut q = f0;
            while q < e0 {
                let e = usize::cast_from(rev_edges[q]);
                if e % k == slot {
                    edges += 1;
                    q += 1;
                } else {
                    q = e0;
                }
            }
            row_scale[r] = split_scale(a_max * f32::cast_from(max(edges, 1u32)));
        }
        r += threads;
    }

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);
    sync_cube();

    // A thread stages feature column `a_t` of A for rows `a_m, a_m +
    // a_stride, …`, and kernel entries `q, q + threads, …` of `Kᵀ`.
    let a_t = tid % depth_step;
    let a_stride = threads / depth_step;
    let k_base = slot * channels;
    let mut f0 = 0;
    while f0 < features {
        let f = f0 + a_t;
        let mut m = tid / depth_step;
        while m < tile_edge {
            let mut v = 0.0f32;
            if f < features {
                let base = usize::cast_from(dy_base[m]);
                let e_end = usize::cast_from(end[m]);
                let mut q = usize::cast_from(first[m]);
                while q < e_end {
                    let e = usize::cast_from(rev_edges[q]);
                    let p = e / k;
                    if e - p * k == slot {
                        let mut g = f32::cast_from(dy[(base + p) * features + f]);
                        if weighted {
                            g *= f32::cast_from(weights[e]);
                        }
                        v += g;
                        q += 1;
                    } else {
                        q = e_end;
                    }
                }
            }
            let mut scale = 1.0f32;
            if split {
                scale = row_scale[m];
            }
            put(v, scale, &mut a_s, &mut a_lo, m * depth_step + a_t, split);
            m += a_stride;
        }
        let mut q = tid;
        while q < comptime!(2 * s * 4 * s) {
            let fr = f0 + q / tile_edge;
            let c = n0 + q % tile_edge;
            let mut v = 0.0f32;
            if fr < features && c < channels {
                v = f32::cast_from(kernel[(k_base + c) * features + fr]);
            }
            put(v, b_scale, &mut b_s, &mut b_lo, q, split);
            q += threads;
        }
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        f0 += depth_step;
    }

    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let r = q / tile_edge;
        let c = n0 + q % tile_edge;
        if m0 + r < rows && c < channels {
            let at = usize::cast_from(dx_row[r]) * channels + c;
            let mut v = c_s[q];
            if split {
                v = v / row_scale[r] / b_scale;
            }
            dx[at] += v;
        }
        q += threads;
    }
}

/// The input gradient on tensor cores for graphs without slot lists:
/// `dX[(b,i), c] = Σ_(j,f) A[(b,i), (j,f)]·K[j·C + c, f]` with
/// `A[(b,i), (j,f)] = Σ_{p : idx[p,j] = i} w[p,j]·dY[b,p,f]`, the `k·F`
/// reduction staged `2s` deep. As in the scalar `contract_grad_input_kernel`,
/// a pixel's reverse edges are ordered by slot and a thread's column only
/// moves forward in `j`, so each of its staged rows keeps a cursor into its
/// edge list. The split path scales a row of A by its bound: max|dY|·max|w|
/// times the pixel's edge count.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn contract_grad_input_cmma_kernel<F: Float, H: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    kernel: &Tensor<F>,
    amax_dy: &Tensor<F>,
    amax_w: &Tensor<F>,
    amax_k: &Tensor<F>,
    dx: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    features: usize,
    rows: usize,
    tiles_n: usize,
    num_tiles: usize,
    #[comptime] weighted: bool,
    #[comptime] s: usize,
    #[comptime] loads: usize,
    #[comptime] split: bool,
    #[define(F, H, I)] _dtypes: [ElemType; 3],
) {
    let tile_edge = comptime!(4 * s);
    let depth_step = comptime!(2 * s);
    // As in the forward: no early return ahead of the barriers.
    let active = CUBE_POS < num_tiles;
    let tile = min(CUBE_POS, num_tiles - 1);
    let m0 = (tile / tiles_n) * tile_edge;
    let n0 = (tile % tiles_n) * tile_edge;
    let depth = k * features;
    let threads = CUBE_DIM as usize;
    let tid = UNIT_POS as usize;
    let plane = UNIT_POS_Y as usize;
    let pm = plane / 2;
    let pn = plane % 2;

    let mut a_s = Shared::<[H]>::new_slice(comptime!(4 * s * 2 * s));
    let mut b_s = Shared::<[H]>::new_slice(comptime!(2 * s * 4 * s));
    let mut a_lo = Shared::<[H]>::new_slice(comptime!(low_len(4 * s * 2 * s, split)));
    let mut b_lo = Shared::<[H]>::new_slice(comptime!(low_len(2 * s * 4 * s, split)));
    let mut c_s = Shared::<[f32]>::new_slice(comptime!(4 * s * 4 * s));
    let mut row_scale = Shared::<[f32]>::new_slice(comptime!(low_len(4 * s, split)));
    let mut b_scale = 1.0f32;
    if split {
        b_scale = split_scale(f32::cast_from(amax_k[0]));
        let mut a_max = f32::cast_from(amax_dy[0]);
        if weighted {
            a_max *= f32::cast_from(amax_w[0]);
        }
        let mut r = tid;
        while r < tile_edge {
            let row = min(m0 + r, rows - 1);
            let i = row % n_in;
            let edges = usize::cast_from(rev_offsets[i + 1]) - usize::cast_from(rev_offsets[i]);
            row_scale[r] = split_scale(a_max * f32::cast_from(max(edges, 1)));
            r += threads;
        }
    }

    let c00 = zero_accumulator(s);
    let c01 = zero_accumulator(s);
    let c10 = zero_accumulator(s);
    let c11 = zero_accumulator(s);

    // A thread stages column `a_t` of the A tile in rows `a_m + l·a_stride`,
    // keeping for each the range of its edges not yet passed
    // (`cur[l]..end[l]`) and the slot of the first (`k` when none is left).
    let a_t = tid % depth_step;
    let a_m = tid / depth_step;
    let a_stride = threads / depth_step;
    let mut dy_base = Array::<usize>::new(loads);
    let mut cur = Array::<usize>::new(loads);
    let mut end = Array::<usize>::new(loads);
    let mut next_slot = Array::<usize>::new(loads);
    #[unroll]
    for l in 0..loads {
        let m = a_m + l * a_stride;
        let row = m0 + m;
        start_row_cursor(
            rev_offsets,
            rev_edges,
            &mut dy_base,
            &mut cur,
            &mut end,
            &mut next_slot,
            l,
            row,
            m < tile_edge && row < rows,
            n_in,
            n_out,
            k,
        );
    }
    sync_cube();

    // The thread's A column `k0 + a_t` as (slot j, feature f), moved forward
    // by `2s` each step without a division.
    let mut j = a_t / features;
    let mut f = a_t - j * features;
    let mut k0 = 0;
    while k0 < depth {
        let col = k0 + a_t;
        #[unroll]
        for l in 0..loads {
            let m = a_m + l * a_stride;
            let mut v = 0.0f32;
            if col < depth {
                v = slot_sum(
                    dy,
                    rev_edges,
                    weights,
                    &dy_base,
                    &mut cur,
                    &end,
                    &mut next_slot,
                    l,
                    j,
                    f,
                    k,
                    features,
                    weighted,
                );
            }
            if m < tile_edge {
                let mut scale = 1.0f32;
                if split {
                    scale = row_scale[m];
                }
                put(v, scale, &mut a_s, &mut a_lo, m * depth_step + a_t, split);
            }
        }
        // B = Kᵀ per slot: row (jj, ff) of the reduction, column c.
        let mut q = tid;
        while q < comptime!(2 * s * 4 * s) {
            let kr = k0 + q / tile_edge;
            let c = n0 + q % tile_edge;
            let mut v = 0.0f32;
            if kr < depth && c < channels {
                let jj = kr / features;
                let ff = kr - jj * features;
                v = f32::cast_from(kernel[(jj * channels + c) * features + ff]);
            }
            put(v, b_scale, &mut b_s, &mut b_lo, q, split);
            q += threads;
        }
        sync_cube();

        multiply_split(
            &a_s, &a_lo, &b_s, &b_lo, &c00, &c01, &c10, &c11, pm, pn, s, split,
        );
        sync_cube();
        k0 += depth_step;
        f += depth_step;
        while f >= features {
            f -= features;
            j += 1;
        }
    }

    store_quarter(&mut c_s, &c00, &c01, &c10, &c11, pm, pn, s);
    sync_cube();
    let mut q = tid;
    while q < comptime!(4 * s * 4 * s) {
        let r = q / tile_edge;
        let row = m0 + r;
        let c = n0 + q % tile_edge;
        if active && row < rows && c < channels {
            let mut v = c_s[q];
            if split {
                v = v / row_scale[r] / b_scale;
            }
            dx[row * channels + c] = F::cast_from(v);
        }
        q += threads;
    }
}

/// An `s × s` f32 accumulator fragment at zero.
#[cube]
fn zero_accumulator(#[comptime] s: usize) -> cmma::Matrix<f32> {
    cmma::Matrix::<f32>::from_value(
        cmma::MatrixIdent::Accumulator,
        s,
        s,
        s,
        cmma::MatrixLayout::Undefined,
        f32::new(0.0),
    )
}

/// One staged step of every kernel here: the plane `(pm, pn)` multiplies its
/// rows of the `4s × 2s` operand tile `a_s` by its columns of the
/// `2s × 4s` tile `b_s` (both row-major) into its 2 × 2 accumulators.
#[cube]
#[allow(clippy::too_many_arguments)]
fn multiply_staged<H: Float>(
    a_s: &[H],
    b_s: &[H],
    c00: &cmma::Matrix<f32>,
    c01: &cmma::Matrix<f32>,
    c10: &cmma::Matrix<f32>,
    c11: &cmma::Matrix<f32>,
    pm: usize,
    pn: usize,
    #[comptime] s: usize,
) {
    let depth_step = comptime!(2 * s);
    let tile_edge = comptime!(4 * s);
    // A fragment's rows end `s − 1` strides plus `s` after its start.
    let a_span = comptime!((s - 1) * 2 * s + s);
    let b_span = comptime!((s - 1) * 4 * s + s);
    #[unroll]
    for kk in 0..2usize {
        let a0_at = (pm * 2 * s) * depth_step + kk * s;
        let a1_at = a0_at + s * depth_step;
        let b0_at = kk * s * tile_edge + pn * 2 * s;
        let b1_at = b0_at + s;
        let a0 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::A,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &a_s[a0_at..a0_at + a_span],
            u32::cast_from(depth_step),
        );
        let a1 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::A,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &a_s[a1_at..a1_at + a_span],
            u32::cast_from(depth_step),
        );
        let b0 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::B,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &b_s[b0_at..b0_at + b_span],
            u32::cast_from(tile_edge),
        );
        let b1 = cmma::Matrix::<H>::from_slice(
            cmma::MatrixIdent::B,
            s,
            s,
            s,
            cmma::MatrixLayout::RowMajor,
            &b_s[b1_at..b1_at + b_span],
            u32::cast_from(tile_edge),
        );
        cmma::execute(&a0, &b0, c00, c00);
        cmma::execute(&a0, &b1, c01, c01);
        cmma::execute(&a1, &b0, c10, c10);
        cmma::execute(&a1, &b1, c11, c11);
    }
}

/// The plane `(pm, pn)`'s 2 × 2 accumulators into its quarter of the
/// row-major `4s × 4s` f32 tile `c_s`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn store_quarter(
    c_s: &mut [f32],
    c00: &cmma::Matrix<f32>,
    c01: &cmma::Matrix<f32>,
    c10: &cmma::Matrix<f32>,
    c11: &cmma::Matrix<f32>,
    pm: usize,
    pn: usize,
    #[comptime] s: usize,
) {
    let tile_edge = comptime!(4 * s);
    let span = comptime!((s - 1) * 4 * s + s);
    let stride = u32::cast_from(tile_edge);
    let c_at = (pm * 2 * s) * tile_edge + pn * 2 * s;
    cmma::store(
        &mut c_s[c_at..c_at + span],
        c00,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s;
    cmma::store(
        &mut c_s[at..at + span],
        c01,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s * tile_edge;
    cmma::store(
        &mut c_s[at..at + span],
        c10,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
    let at = c_at + s * tile_edge + s;
    cmma::store(
        &mut c_s[at..at + span],
        c11,
        stride,
        cmma::MatrixLayout::RowMajor,
    );
}

/// Stages the `2s × 4s` right operand tile: rows `r0..r0 + 2s` (those below
/// `r_end`) and columns `n0..n0 + 4s` (those below `width`) of the
/// row-major `src` (`width` columns), zero elsewhere, through [`put`]. The
/// forward stages the kernel `[k·C, F]` this way, the kernel gradient `dY`
/// `[B·N_out, F]`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn stage_rows<F: Float, H: Float>(
    src: &Tensor<F>,
    hi: &mut [H],
    lo: &mut [H],
    scale: f32,
    r0: usize,
    r_end: usize,
    n0: usize,
    width: usize,
    #[comptime] s: usize,
    #[comptime] split: bool,
) {
    let tile_edge = comptime!(4 * s);
    let mut q = UNIT_POS as usize;
    while q < comptime!(2 * s * 4 * s) {
        let row = r0 + q / tile_edge;
        let n = n0 + q % tile_edge;
        let mut v = 0.0f32;
        if row < r_end && n < width {
            v = f32::cast_from(src[row * width + n]);
        }
        put(v, scale, hi, lo, q, split);
        q += CUBE_DIM as usize;
    }
}

/// Stores the operand entry `v` at `at`: as it is, in the staged dtype, or
/// (split) `u = v·scale` as the f16 pair `hi` (`u` rounded to f16's 11
/// significant bits) in `hi` and `lo = f16(u − hi)` in `lo`, which together
/// carry 22 of its 24 significant bits.
#[cube]
fn put<H: Float>(
    v: f32,
    scale: f32,
    hi: &mut [H],
    lo: &mut [H],
    at: usize,
    #[comptime] split: bool,
) {
    if split {
        let scaled = v * scale;
        // `hi` is rounded in f32 bits (half an f16 unit added, the 13 bits
        // f16 lacks cleared), not by a cast to f16 and back: shader
        // compilers may fold that round trip into nothing (Mesa's does),
        // which would leave every `lo` at zero. `scaled − high` is exact.
        let bits = u32::reinterpret(scaled);
        let high = f32::reinterpret((bits + 0x1000u32) & 0xFFFF_E000u32);
        hi[at] = H::cast_from(high);
        lo[at] = H::cast_from(scaled - high);
    } else {
        hi[at] = H::cast_from(v);
    }
}

/// One staged step: `hi_a·hi_b`, and for split f32 operands also
/// `hi_a·lo_b + lo_a·hi_b` (the dropped `lo·lo` is below 2⁻²² of the
/// product), in that fixed order into the same f32 accumulators.
#[cube]
#[allow(clippy::too_many_arguments)]
fn multiply_split<H: Float>(
    a_hi: &[H],
    a_lo: &[H],
    b_hi: &[H],
    b_lo: &[H],
    c00: &cmma::Matrix<f32>,
    c01: &cmma::Matrix<f32>,
    c10: &cmma::Matrix<f32>,
    c11: &cmma::Matrix<f32>,
    pm: usize,
    pn: usize,
    #[comptime] s: usize,
    #[comptime] split: bool,
) {
    multiply_staged(a_hi, b_hi, c00, c01, c10, c11, pm, pn, s);
    if split {
        multiply_staged(a_hi, b_lo, c00, c01, c10, c11, pm, pn, s);
        multiply_staged(a_lo, b_hi, c00, c01, c10, c11, pm, pn, s);
    }
}

/// The factor the split path multiplies an operand by before halving it
/// into f16, given a bound `bound` on the operand's `|v|`: it brings the
/// bound to 2¹³, well inside f16's range (65504) with room for `hi`'s
/// rounding, so that nothing overflows and entries down to 2⁻²⁴ of the
/// bound (f16's subnormals) keep their low half. The division at the end
/// undoes it. A zero bound (an all-zero operand) gives 1, and the products
/// are the zeros. So does a bound past f32's range (infinities, NaN): the
/// outputs that read a non-finite input are then NaN (an infinity's `lo`
/// is `∞ − ∞` in [`put`]), where plain f32 arithmetic could give an
/// infinity.
#[cube]
fn split_scale(bound: f32) -> f32 {
    let mut scale = 1.0f32;
    // `bound < 3.4e38` is false for NaN and infinity.
    if bound > 0.0 && bound < 3.4e38 {
        // A floor under tiny bounds keeps the factor finite (≤ 2¹³·10³⁰).
        scale = 8192.0 / max(bound, 1.0e-30);
    }
    scale
}

/// Length of a shared array that only the split path uses: 1 otherwise.
fn low_len(len: usize, split: bool) -> usize {
    if split { len } else { 1 }
}

/// One entry of a gathered row, in f32: channel `c` of the input pixel that
/// slot `j` of the row reads (`w·X[b, idx[p, j], c]` where weighted), with
/// the row given by its batch's first pixel `x_base = b·N_in` and its first
/// edge `e_base = p·k`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn gathered<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    x_base: u32,
    e_base: u32,
    j: usize,
    c: usize,
    channels: usize,
    #[comptime] weighted: bool,
) -> f32 {
    let e = usize::cast_from(e_base) + j;
    let pixel = usize::cast_from(x_base) + usize::cast_from(indices[e]);
    let mut v = f32::cast_from(x[pixel * channels + c]);
    if weighted {
        v *= f32::cast_from(weights[e]);
    }
    v
}
