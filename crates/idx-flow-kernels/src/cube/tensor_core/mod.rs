//! The gather-contract on tensor cores (CubeCL's cooperative matrices,
//! `cmma`), for f16, bf16 and f32 tensors: forward, kernel gradient and
//! input gradient.
//!
//! Same tiling idea as the scalar forward in `scalar_contract.rs`, with `s` the edge of
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

use cubecl::ir::{ElemType, FloatKind};
use cubecl::{CubeDim, calculate_cube_count_elemwise};

/// Planes per cube: a 2 × 2 grid of quarters of the output tile, each
/// 2 × 2 fragments.
mod forward;
mod fragments;
mod grad_input;

use forward::*;
use grad_input::*;
pub(super) const PLANES: u32 = 4;

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
    crate::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    crate::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
        crate::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    crate::TENSOR_CORE_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
