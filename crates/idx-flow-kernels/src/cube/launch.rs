//! Host-side helpers of the launches: operand preparation, launch
//! geometry, the kernel-gradient partial sums and the per-slot input
//! gradient's loop.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::{cast, into_contiguous};
use burn_cubecl::ops::numeric::{empty_device_contiguous_dtype, zeros_client};
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use super::scalar_contract::*;
use super::scalar_grad_input::*;
use super::tiling::*;

/// A contiguous tensor in `dtype` (cast only when it differs).
pub(super) fn prepare(t: CubeTensor, dtype: DType) -> CubeTensor {
    let t = into_contiguous(t);
    if t.dtype == dtype { t } else { cast(t, dtype) }
}

pub(super) fn dims<const D: usize>(t: &CubeTensor) -> [usize; D] {
    t.meta.shape().dims::<D>()
}

/// An uninitialised contiguous result like `like`'s client and device.
pub(super) fn empty(like: &CubeTensor, shape: Vec<usize>, dtype: DType) -> CubeTensor {
    empty_device_contiguous_dtype(
        like.client.clone(),
        like.device.clone(),
        Shape::from(shape),
        dtype,
    )
}

/// Launch settings for `cubes` cubes of `threads` threads, spread over the
/// grid's axes when one axis is too short (kernels index by `CUBE_POS`).
pub(super) fn tiled_launch(t: &CubeTensor, cubes: usize, threads: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(threads as u32);
    (
        calculate_cube_count_elemwise(&t.client, cubes * threads, dim),
        dim,
    )
}

/// Launch settings for one thread per element of `total`.
pub(super) fn elementwise_launch(t: &CubeTensor, total: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(&t.client, total);
    (calculate_cube_count_elemwise(&t.client, total, dim), dim)
}

/// Pass 2 of the kernel gradient: `[groups, rows, cols]` f32 partials summed
/// in group order into a `[rows, cols]` tensor in `dtype`.
pub(super) fn sum_partials(
    like: &CubeTensor,
    partials: CubeTensor,
    [rows, cols]: [usize; 2],
    groups: usize,
    dtype: DType,
) -> CubeTensor {
    let len = rows * cols;
    let out = empty(like, vec![rows, cols], dtype);
    let (count, dim) = elementwise_launch(like, len);
    // SAFETY: one thread per element of the [rows, cols] output, bounds checked.
    unsafe {
        sum_partials_kernel::launch_unchecked(
            &like.client,
            count,
            dim,
            partials.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            len,
            groups,
            dtype_to_storage_type(dtype),
        )
    };
    out
}

/// The index tensors in one int dtype (the first one's), contiguous.
pub(super) fn int_tensors<const N: usize>(ts: [CubeTensor; N]) -> [CubeTensor; N] {
    let dtype = ts[0].dtype;
    ts.map(|t| prepare(t, dtype))
}

/// The input gradient of the gather-contract slot by slot (see
/// [`contract_grad_input_slot_kernel`]): an f32 accumulator starts at zero,
/// each slot's launch adds its product, and the result is cast to the
/// tensors' dtype.
pub(super) fn contract_grad_input_by_slot(
    dy: CubeTensor,
    rev_offsets: CubeTensor,
    rev_edges: CubeTensor,
    rev_slots: CubeTensor,
    edge_weights: CubeTensor,
    kernel: CubeTensor,
    weighted: bool,
) -> CubeTensor {
    let dtype = dy.dtype;
    let dy = prepare(dy, dtype);
    let [rev_offsets, rev_edges, rev_slots] = int_tensors([rev_offsets, rev_edges, rev_slots]);
    let w = prepare(edge_weights, dtype);
    let kernel = prepare(kernel, dtype);
    let [batch, n_out, features] = dims::<3>(&dy);
    let k = dims::<2>(&w)[1];
    let channels = dims::<2>(&kernel)[0] / k.max(1);
    let n_in = dims::<1>(&rev_offsets)[0] - 1;
    let pairs = (dims::<1>(&rev_slots)[0] - (k + 1)) / 2;
    let shape = Shape::from(vec![batch, n_in, channels]);
    let acc = zeros_client(dy.client.clone(), dy.device.clone(), shape, DType::F32);
    if batch * n_in * channels == 0 || features == 0 || n_out == 0 {
        return if dtype == DType::F32 {
            acc
        } else {
            cast(acc, dtype)
        };
    }
    let dtypes = [
        dtype_to_storage_type(dtype),
        dtype_to_storage_type(rev_offsets.dtype),
    ];
    let fragments = crate::options()
        .tensor_cores
        .then(|| super::tensor_core::fragments(&dy, dtype))
        .flatten();
    if let Some(fragments) = fragments {
        super::tensor_core::launch_grad_input_by_slot(
            &dy,
            &rev_offsets,
            &rev_edges,
            &rev_slots,
            &w,
            &kernel,
            &acc,
            [batch, n_in, n_out, channels, k, features],
            weighted,
            fragments,
            dtypes,
        );
        return if dtype == DType::F32 {
            acc
        } else {
            cast(acc, dtype)
        };
    }
    let tiling = Tiling::for_columns(channels, &dy);
    let tiles_n = channels.div_ceil(tiling.bn);
    // No slot reads more pixels than there are inputs, or outputs.
    let num_tiles = (batch * n_in.min(n_out)).div_ceil(tiling.bm) * tiles_n;
    let (count, dim) = tiled_launch(&dy, num_tiles, tiling.threads());
    for slot in 0..k {
        // SAFETY: the slot lists hold pixels in 0..N_in and edge positions in
        // 0..N_out·k (ReverseGraph::slot_rows of this graph); rows, features
        // and channels are checked in the kernel, and each launch writes a
        // pixel's row at most once.
        unsafe {
            contract_grad_input_slot_kernel::launch_unchecked(
                &dy.client,
                count.clone(),
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.clone().into_tensor_arg(),
                rev_edges.clone().into_tensor_arg(),
                rev_slots.clone().into_tensor_arg(),
                w.clone().into_tensor_arg(),
                kernel.clone().into_tensor_arg(),
                acc.clone().into_tensor_arg(),
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
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
    }
    if dtype == DType::F32 {
        acc
    } else {
        cast(acc, dtype)
    }
}
