//! `GraphKernels` on burn's CubeCL backend: which kernel runs for each
//! operation (scalar or tensor cores, by the options and the device), and
//! with which tiling.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::ops::numeric::zeros_client;
use burn_cubecl::tensor::CubeTensor;

use super::launch::*;
use super::scalar_contract::*;
use super::scalar_grad_input::*;
use super::scalar_sum::*;
use super::tiling::*;
use crate::GraphKernels;

/// Cubes the kernel gradient aims to keep busy: its row groups are multiplied
/// until the tiles of `[k·C, F]` times the groups reach about this many.
const GRAD_TARGET_CUBES: usize = 1024;
/// At most this many f32 values of kernel-gradient partials (64 MiB).
const GRAD_PARTIAL_FLOATS: usize = 1 << 24;

impl GraphKernels for CubeBackend {
    fn gather_contract(
        x: CubeTensor,
        indices: CubeTensor,
        _rev_offsets: CubeTensor,
        _rev_edges: CubeTensor,
        _rev_slots: CubeTensor,
        edge_weights: CubeTensor,
        kernel: CubeTensor,
        bias: CubeTensor,
        weighted: bool,
        biased: bool,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let kernel = prepare(kernel, dtype);
        let bias = prepare(bias, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let features = dims::<2>(&kernel)[1];
        let rows = batch * n_out;
        let out = empty(&x, vec![batch, n_out, features], dtype);
        if rows == 0 || features == 0 {
            return out;
        }
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
        if let Some(fragments) = crate::options()
            .tensor_cores
            .then(|| super::tensor_core::fragments(&x, dtype))
            .flatten()
        {
            super::tensor_core::launch(
                x,
                indices,
                w,
                kernel,
                bias,
                &out,
                [batch, n_in, channels, k, features],
                weighted,
                biased,
                fragments,
                dtypes,
            );
            return out;
        }
        let tiling = Tiling::forward(features, &x);
        let tiles_n = features.div_ceil(tiling.bn);
        let num_tiles = rows.div_ceil(tiling.bm) * tiles_n;
        let (count, dim) = tiled_launch(&x, num_tiles, tiling.threads());
        // SAFETY: every global read is bounded by the checks in the kernel
        // (rows < B·N_out, columns < k·C and < F) and by the indices lying in
        // 0..N_in, which the caller guarantees; the output is contiguous.
        unsafe {
            contract_kernel::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                w.into_tensor_arg(),
                kernel.into_tensor_arg(),
                bias.into_tensor_arg(),
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
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
        out
    }

    fn gather_contract_grad_input(
        dy: CubeTensor,
        rev_offsets: CubeTensor,
        rev_edges: CubeTensor,
        rev_slots: CubeTensor,
        edge_weights: CubeTensor,
        kernel: CubeTensor,
        weighted: bool,
    ) -> CubeTensor {
        let k = dims::<2>(&edge_weights)[1];
        if dims::<1>(&rev_slots)[0] > k + 1 {
            return contract_grad_input_by_slot(
                dy,
                rev_offsets,
                rev_edges,
                rev_slots,
                edge_weights,
                kernel,
                weighted,
            );
        }
        let dtype = dy.dtype;
        let dy = prepare(dy, dtype);
        let [rev_offsets, rev_edges] = int_tensors([rev_offsets, rev_edges]);
        let w = prepare(edge_weights, dtype);
        let kernel = prepare(kernel, dtype);
        let [batch, n_out, features] = dims::<3>(&dy);
        let k = dims::<2>(&w)[1];
        let channels = dims::<2>(&kernel)[0] / k.max(1);
        let n_in = dims::<1>(&rev_offsets)[0] - 1;
        let rows = batch * n_in;
        let out = empty(&dy, vec![batch, n_in, channels], dtype);
        if rows == 0 || channels == 0 {
            return out;
        }
        if k == 0 || features == 0 || n_out == 0 {
            return zeros_client(
                dy.client.clone(),
                dy.device.clone(),
                Shape::from(vec![batch, n_in, channels]),
                dtype,
            );
        }
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(rev_offsets.dtype),
        ];
        if let Some(fragments) = crate::options()
            .tensor_cores
            .then(|| super::tensor_core::fragments(&dy, dtype))
            .flatten()
        {
            super::tensor_core::launch_grad_input(
                dy,
                rev_offsets,
                rev_edges,
                w,
                kernel,
                &out,
                [batch, n_in, n_out, channels, k, features],
                weighted,
                fragments,
                dtypes,
            );
            return out;
        }
        let tiling = Tiling::for_columns(channels, &dy);
        let tiles_n = channels.div_ceil(tiling.bn);
        let num_tiles = rows.div_ceil(tiling.bm) * tiles_n;
        let (count, dim) = tiled_launch(&dy, num_tiles, tiling.threads());
        // SAFETY: reads follow the reverse graph, whose offsets lie in
        // 0..=N_out·k and whose edges lie in 0..N_out·k; rows < B·N_in,
        // reduction columns < k·F and channels < C are checked in the kernel.
        unsafe {
            contract_grad_input_kernel::launch_unchecked(
                &dy.client,
                count,
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.into_tensor_arg(),
                rev_edges.into_tensor_arg(),
                w.into_tensor_arg(),
                kernel.into_tensor_arg(),
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
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
        out
    }

    fn gather_contract_grad_kernel(
        x: CubeTensor,
        indices: CubeTensor,
        edge_weights: CubeTensor,
        dy: CubeTensor,
        weighted: bool,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let dy = prepare(dy, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let features = dims::<3>(&dy)[2];
        let depth = k * channels;
        let rows = batch * n_out;
        let len = depth * features;
        if len == 0 {
            return empty(&x, vec![depth, features], dtype);
        }
        if rows == 0 {
            return zeros_client(
                x.client.clone(),
                x.device.clone(),
                Shape::from(vec![depth, features]),
                dtype,
            );
        }
        let fragments = crate::options()
            .tensor_cores
            .then(|| super::tensor_core::fragments(&x, dtype))
            .flatten();
        let tiling = Tiling::for_columns(features, &x);
        // (tile rows, tile columns, rows per step) of pass 1.
        let (bm, bn, bk) = match fragments {
            Some(f) => {
                let (tile, step) = f.tile_and_step();
                (tile, tile, step)
            }
            None => (tiling.bm, tiling.bn, tiling.bk),
        };
        let tiles = depth.div_ceil(bm) * features.div_ceil(bn);
        // The row groups depend on the sizes (and the path) alone.
        let groups = (GRAD_TARGET_CUBES / tiles)
            .min(GRAD_PARTIAL_FLOATS / len)
            .min(rows.div_ceil(bk))
            .max(1);
        let group_rows = rows.div_ceil(groups).div_ceil(bk) * bk;
        let groups = rows.div_ceil(group_rows);
        let partials = empty(&x, vec![groups, depth, features], DType::F32);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
        if let Some(fragments) = fragments {
            super::tensor_core::launch_grad_kernel_partials(
                x.clone(),
                indices,
                w,
                dy,
                &partials,
                [batch, n_in, channels, k, features],
                group_rows,
                weighted,
                fragments,
                dtypes,
            );
            return sum_partials(&x, partials, [depth, features], groups, dtype);
        }
        let tiles_n = features.div_ceil(tiling.bn);
        let num_cubes = groups * tiles;
        let (count, dim) = tiled_launch(&x, num_cubes, tiling.threads());
        // SAFETY: as for the forward; partial writes stay inside their
        // group's [k·C, F] slice.
        unsafe {
            contract_grad_kernel_partials::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                w.into_tensor_arg(),
                dy.into_tensor_arg(),
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
                tiling.bm,
                tiling.bn,
                tiling.bk,
                tiling.tm,
                tiling.tn,
                dtypes,
            )
        };
        sum_partials(&x, partials, [depth, features], groups, dtype)
    }

    fn gather_sum(
        x: CubeTensor,
        indices: CubeTensor,
        _rev_offsets: CubeTensor,
        _rev_edges: CubeTensor,
        edge_weights: CubeTensor,
    ) -> CubeTensor {
        let dtype = x.dtype;
        let x = prepare(x, dtype);
        let [indices] = int_tensors([indices]);
        let w = prepare(edge_weights, dtype);
        let [batch, n_in, channels] = dims::<3>(&x);
        let [n_out, k] = dims::<2>(&indices);
        let out = empty(&x, vec![batch, n_out, channels], dtype);
        let total = batch * n_out * channels;
        if total == 0 {
            return out;
        }
        let (count, dim) = elementwise_launch(&x, total);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(indices.dtype),
        ];
        // SAFETY: one thread per output element, bounds checked; the indices
        // lie in 0..N_in (the caller's guarantee).
        unsafe {
            sum_kernel::launch_unchecked(
                &x.client,
                count,
                dim,
                x.clone().into_tensor_arg(),
                indices.into_tensor_arg(),
                w.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                total,
                dtypes,
            )
        };
        out
    }

    fn gather_sum_grad_input(
        dy: CubeTensor,
        rev_offsets: CubeTensor,
        rev_edges: CubeTensor,
        edge_weights: CubeTensor,
    ) -> CubeTensor {
        let dtype = dy.dtype;
        let dy = prepare(dy, dtype);
        let [rev_offsets, rev_edges] = int_tensors([rev_offsets, rev_edges]);
        let w = prepare(edge_weights, dtype);
        let [batch, n_out, channels] = dims::<3>(&dy);
        let k = dims::<2>(&w)[1];
        let n_in = dims::<1>(&rev_offsets)[0] - 1;
        let out = empty(&dy, vec![batch, n_in, channels], dtype);
        let total = batch * n_in * channels;
        if total == 0 {
            return out;
        }
        let (count, dim) = elementwise_launch(&dy, total);
        let dtypes = [
            dtype_to_storage_type(dtype),
            dtype_to_storage_type(rev_offsets.dtype),
        ];
        // SAFETY: one thread per input element, bounds checked; reads follow
        // the reverse graph of a valid index list.
        unsafe {
            sum_grad_input_kernel::launch_unchecked(
                &dy.client,
                count,
                dim,
                dy.clone().into_tensor_arg(),
                rev_offsets.into_tensor_arg(),
                rev_edges.into_tensor_arg(),
                w.into_tensor_arg(),
                out.clone().into_tensor_arg(),
                n_in,
                n_out,
                channels,
                k,
                total,
                dtypes,
            )
        };
        out
    }
}
