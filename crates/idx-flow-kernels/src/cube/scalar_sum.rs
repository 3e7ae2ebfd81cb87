//! The gather-sum kernels: the forward and its input gradient.

use cubecl::prelude::*;

/// The gather-sum: one thread per output element `(b·N_out + p, c)`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn sum_kernel<F: Float, I: Numeric>(
    x: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    out: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    total: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= total {
        terminate!();
    }
    let row = pos / channels;
    let c = pos - row * channels;
    let b = row / n_out;
    let e0 = (row - b * n_out) * k;
    let x_base = b * n_in;
    let mut sum = 0.0f32;
    for j in 0..k {
        let e = e0 + j;
        let src = (x_base + usize::cast_from(indices[e])) * channels + c;
        sum += f32::cast_from(weights[e]) * f32::cast_from(x[src]);
    }
    out[pos] = F::cast_from(sum);
}

/// Input gradient of the gather-sum: one thread per input element
/// `(b·N_in + i, c)`, over the pixel's reverse edges in ascending order.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(super) fn sum_grad_input_kernel<F: Float, I: Numeric>(
    dy: &Tensor<F>,
    rev_offsets: &Tensor<I>,
    rev_edges: &Tensor<I>,
    weights: &Tensor<F>,
    dx: &mut Tensor<F>,
    n_in: usize,
    n_out: usize,
    channels: usize,
    k: usize,
    total: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    if pos >= total {
        terminate!();
    }
    let row = pos / channels;
    let c = pos - row * channels;
    let b = row / n_in;
    let i = row - b * n_in;
    let dy_base = b * n_out;
    let e_end = usize::cast_from(rev_offsets[i + 1]);
    let mut q = usize::cast_from(rev_offsets[i]);
    let mut sum = 0.0f32;
    while q < e_end {
        let e = usize::cast_from(rev_edges[q]);
        let p = e / k;
        sum += f32::cast_from(weights[e]) * f32::cast_from(dy[(dy_base + p) * channels + c]);
        q += 1;
    }
    dx[pos] = F::cast_from(sum);
}
