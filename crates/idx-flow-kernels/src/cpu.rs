//! The fused kernels on burn's CPU backend (flex): the tensors' slices
//! handed to the slice kernels of `idx-flow-gather` (tiled gathers contracted
//! with `gemm` on rayon's pool, the same bits for any number of threads).
//!
//! The kernels compute in f32; other float dtypes are converted on the way in
//! and out. Also the conversions the other CPU operations of this crate share.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorData};
use burn_flex::{Flex, FlexTensor};
use idx_flow_gather::{
    GatherError, GatherSizes, contract_forward, contract_grad_input, contract_grad_kernel,
    sum_forward, sum_grad_input,
};

use super::GraphKernels;

/// A slice kernel's result: the burn operations cannot return an error, and
/// [`DeviceGraph`](crate::DeviceGraph) and the layers check every graph and
/// shape before a kernel runs, so an error here is a bug in this crate.
fn checked(result: Result<Vec<f32>, GatherError>) -> Vec<f32> {
    result.unwrap_or_else(|e| {
        panic!("gather kernel called on arguments the layers should have refused: {e}")
    })
}

fn sizes(batch: usize, n_in: usize, channels: usize, n_out: usize, k: usize) -> GatherSizes {
    GatherSizes {
        batch,
        n_in,
        channels,
        n_out,
        k,
    }
}

/// A float tensor as contiguous f32, with its original dtype.
pub(crate) fn f32_tensor(t: FlexTensor) -> (FlexTensor, DType) {
    let dtype = t.dtype();
    let t = if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    };
    let t = if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    };
    (t, dtype)
}

pub(crate) fn floats(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("contiguous f32 after f32_tensor")
}

/// An int tensor's values as i64 (borrowed when they already are; the
/// tensor API stores graph indices as i32, widened here in one pass).
fn ints(t: &FlexTensor) -> Cow<'_, [i64]> {
    if let Some(s) = t.as_slice::<i64>() {
        return Cow::Borrowed(s);
    }
    match t.as_slice::<i32>() {
        Some(s) => Cow::Owned(s.iter().map(|&v| i64::from(v)).collect()),
        None => Cow::Owned(
            t.clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("graph indices convert to i64"),
        ),
    }
}

/// `len` floats written by `fill(chunk index, chunk)` over chunks of
/// `chunk` values in parallel, without zeroing them first: under a pooling
/// allocator (which reuses memory rather than mapping fresh zero pages)
/// zeroing would be one more pass over memory than the kernel itself.
/// `fill` must write every value of its chunk.
pub(crate) fn par_written(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Send + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut values = Vec::with_capacity(len);
    values.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| fill(i, c));
    // SAFETY: `fill` wrote every value of every chunk (its contract).
    unsafe { values.set_len(len) };
    values
}

/// A result `[shape]` in `dtype`.
pub(crate) fn output(values: Vec<f32>, shape: Vec<usize>, dtype: DType) -> FlexTensor {
    let t = FlexTensor::from_data(TensorData::new(values, shape));
    if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, dtype.into())
    }
}

fn dims3(t: &FlexTensor) -> [usize; 3] {
    let s = t.layout().shape();
    [s[0], s[1], s[2]]
}

fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape();
    [s[0], s[1]]
}

impl GraphKernels for Flex {
    fn gather_contract(
        x: FlexTensor,
        indices: FlexTensor,
        _rev_offsets: FlexTensor,
        _rev_edges: FlexTensor,
        _rev_slots: FlexTensor,
        edge_weights: FlexTensor,
        kernel: FlexTensor,
        bias: FlexTensor,
        weighted: bool,
        biased: bool,
    ) -> FlexTensor {
        let [batch, n_in, channels] = dims3(&x);
        let [n_out, k] = dims2(&indices);
        let f = dims2(&kernel)[1];
        let (x, dtype) = f32_tensor(x);
        let (kernel, _) = f32_tensor(kernel);
        let (w, _) = f32_tensor(edge_weights);
        let (bias, _) = f32_tensor(bias);
        let idx = ints(&indices);
        let s = sizes(batch, n_in, channels, n_out, k);
        let y = checked(contract_forward(
            floats(&x),
            &idx,
            weighted.then(|| floats(&w)),
            floats(&kernel),
            biased.then(|| floats(&bias)),
            s,
            f,
        ));
        output(y, vec![batch, n_out, f], dtype)
    }

    fn gather_contract_grad_input(
        dy: FlexTensor,
        rev_offsets: FlexTensor,
        rev_edges: FlexTensor,
        _rev_slots: FlexTensor,
        edge_weights: FlexTensor,
        kernel: FlexTensor,
        weighted: bool,
    ) -> FlexTensor {
        let [batch, n_out, f] = dims3(&dy);
        let [n_out_w, k] = dims2(&edge_weights);
        debug_assert_eq!(n_out, n_out_w);
        let channels = dims2(&kernel)[0] / k;
        let n_in = rev_offsets.layout().shape()[0] - 1;
        let (dy, dtype) = f32_tensor(dy);
        let (kernel, _) = f32_tensor(kernel);
        let (w, _) = f32_tensor(edge_weights);
        let s = sizes(batch, n_in, channels, n_out, k);
        let dx = checked(contract_grad_input(
            floats(&dy),
            &ints(&rev_offsets),
            &ints(&rev_edges),
            weighted.then(|| floats(&w)),
            floats(&kernel),
            s,
            f,
        ));
        output(dx, vec![batch, n_in, channels], dtype)
    }

    fn gather_contract_grad_kernel(
        x: FlexTensor,
        indices: FlexTensor,
        edge_weights: FlexTensor,
        dy: FlexTensor,
        weighted: bool,
    ) -> FlexTensor {
        let [batch, n_in, channels] = dims3(&x);
        let [n_out, k] = dims2(&indices);
        let f = dims3(&dy)[2];
        let (x, dtype) = f32_tensor(x);
        let (dy, _) = f32_tensor(dy);
        let (w, _) = f32_tensor(edge_weights);
        let s = sizes(batch, n_in, channels, n_out, k);
        let dk = checked(contract_grad_kernel(
            floats(&x),
            &ints(&indices),
            weighted.then(|| floats(&w)),
            floats(&dy),
            s,
            f,
        ));
        output(dk, vec![k * channels, f], dtype)
    }

    fn gather_sum(
        x: FlexTensor,
        indices: FlexTensor,
        _rev_offsets: FlexTensor,
        _rev_edges: FlexTensor,
        edge_weights: FlexTensor,
    ) -> FlexTensor {
        let [batch, n_in, channels] = dims3(&x);
        let [n_out, k] = dims2(&indices);
        let (x, dtype) = f32_tensor(x);
        let (w, _) = f32_tensor(edge_weights);
        let s = sizes(batch, n_in, channels, n_out, k);
        let y = checked(sum_forward(floats(&x), &ints(&indices), floats(&w), s));
        output(y, vec![batch, n_out, channels], dtype)
    }

    fn gather_sum_grad_input(
        dy: FlexTensor,
        rev_offsets: FlexTensor,
        rev_edges: FlexTensor,
        edge_weights: FlexTensor,
    ) -> FlexTensor {
        let [batch, n_out, channels] = dims3(&dy);
        let k = dims2(&edge_weights)[1];
        let n_in = rev_offsets.layout().shape()[0] - 1;
        let (dy, dtype) = f32_tensor(dy);
        let (w, _) = f32_tensor(edge_weights);
        let s = sizes(batch, n_in, channels, n_out, k);
        let dx = checked(sum_grad_input(
            floats(&dy),
            &ints(&rev_offsets),
            &ints(&rev_edges),
            floats(&w),
            s,
        ));
        output(dx, vec![batch, n_in, channels], dtype)
    }
}
