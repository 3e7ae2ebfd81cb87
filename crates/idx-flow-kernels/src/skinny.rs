//! A linear layer's matrix products when the batch has few rows and the
//! weight is large: `y = x·Wᵀ` with `x` `[M, K]` and `W` `[O, K]`
//! (PyTorch's layout), and its gradients `dx = dy·W` and `dW = dyᵀ·x`.
//!
//! With a handful of rows against a weight of hundreds of megabytes (the
//! flattened-spectrum MLP of spectrans' AFNO: `[512, 132 354]` against a
//! batch of 8), each product is bound by reading `W` (or writing `dW`) once
//! from memory. A general matrix kernel packs `W` into cache-sized panels
//! on every call, which at these shapes costs more than the arithmetic.
//! Here each product streams `W` exactly once in row blocks, keeps the small
//! operand (`x` or `dy`, `M` rows) in cache, and splits the work over
//! rayon's pool in blocks chosen from the shapes alone. Every product is a
//! fused multiply-add (one rounding; one instruction on AVX2 and AVX-512,
//! so that the products keep up with memory), and every sum runs in a fixed
//! order (eight interleaved lanes along the reduction, then a fixed tree;
//! partial sums of fixed groups added in group order), so results do not
//! depend on the number of threads or on the vector width.
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_kernels::skinny::linear;
//! let device = Device::default();
//! let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &device);
//! let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 1.0, 0.0, 2.0], [3, 2]), &device);
//! // x·wᵀ = [[1, 3, 4], [3, 7, 8]]
//! let y: Vec<f32> = linear(x, w)?.into_data().iter().collect();
//! assert_eq!(y, [1.0, 3.0, 4.0, 3.0, 7.0, 8.0]);
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use std::mem::MaybeUninit;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::cpu::{f32_tensor, floats, output, par_written};
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};

/// Rows of `x` up to which a product counts as skinny: above it, every `W`
/// value is reused often enough for a general (packing) matrix kernel.
pub const MAX_ROWS: usize = 32;

/// Weights (`O·K`) from which a skinny product streams `W` instead of
/// packing it: 4 M values, 16 MB in float32, beyond any cache.
pub const MIN_WEIGHTS: usize = 1 << 22;

/// Interleaved partial sums along a reduction (a multiple of every vector width).
const LANES: usize = 8;

/// Columns of the reduction axis per block of the small operand kept in
/// cache (`M × K_BLOCK` floats: 64 kB at `M = 8`).
const K_BLOCK: usize = 2048;

/// Columns of the reduction axis per block of `x` in [`forward`]: `M ×
/// FORWARD_K_BLOCK` floats (16 kB at `M = 8`) stay in the first-level cache
/// while every row of the task's `W` block passes them.
const FORWARD_K_BLOCK: usize = 512;

/// Rows ahead whose values [`forward`] asks for when a row is one block
/// (8 and 16 rows were no faster).
const AHEAD_ROWS: usize = 4;

/// Weight values per parallel task (whole rows of `W` per task, at least
/// [`MIN_TASK_ROWS`] of them).
const TASK_VALUES: usize = 1 << 16;

/// Rows of `W` per task at least, so that a block of the small operand
/// read into cache serves several rows.
const MIN_TASK_ROWS: usize = 16;

/// Columns of `dx` per task of [`grad_input`] (`M × COL_BLOCK` partial
/// sums stay in the core's first-level cache at `M = 8`).
const COL_BLOCK: usize = 512;

/// Groups of `W`'s rows summed apart, then in group order, by [`grad_input`]
/// when the reduction axis alone gives too few tasks.
const GROUPS: usize = 16;

/// The three products as backend operations.
#[backend_extension(Flex, Autodiff)]
pub trait SkinnyKernels: Backend {
    /// `x` `[M, K]` · `weight` `[O, K]`ᵀ → `[M, O]` (shapes checked by the caller).
    fn skinny_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `dy` `[M, O]` · `weight` `[O, K]` → `[M, K]`.
    fn skinny_linear_grad_input(
        dy: FloatTensor<Self>,
        weight: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
    /// `dy` `[M, O]`ᵀ · `x` `[M, K]` → `[O, K]`.
    fn skinny_linear_grad_weight(dy: FloatTensor<Self>, x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The lanes summed by a fixed tree.
#[inline(always)]
fn lanes_sum(a: &[f32; LANES]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// Eight consecutive values from `at`.
#[inline(always)]
fn lane(s: &[f32], at: usize) -> &[f32; LANES] {
    s[at..at + LANES].try_into().expect("eight values")
}

/// `acc[q] += xs[q]·w` for `MB` rows at once, lane by lane: element `j` of
/// the block goes to lane `j mod 8` (blocks start at multiples of 8, so an
/// element's lane depends only on its index).
#[inline(always)]
fn dots<const MB: usize>(acc: &mut [[f32; LANES]], xs: [&[f32]; MB], w: &[f32]) {
    let n = w.len();
    let whole = n / LANES * LANES;
    let mut a = [[0.0f32; LANES]; MB];
    a.copy_from_slice(&acc[..MB]);
    for c in (0..whole).step_by(LANES) {
        let wv = lane(w, c);
        for q in 0..MB {
            let xv = lane(xs[q], c);
            for j in 0..LANES {
                a[q][j] = xv[j].mul_add(wv[j], a[q][j]);
            }
        }
    }
    for q in 0..MB {
        for (j, (p, v)) in xs[q][whole..n].iter().zip(&w[whole..]).enumerate() {
            a[q][j] = p.mul_add(*v, a[q][j]);
        }
    }
    acc[..MB].copy_from_slice(&a);
}

/// Rows of `W` per task for rows of `k` values.
fn task_rows(k: usize) -> usize {
    (TASK_VALUES / k.max(1)).max(MIN_TASK_ROWS)
}

/// Rows of `x` interleaved per group in [`pack_rows`].
const GROUP: usize = 8;

/// `x`'s rows in groups of [`GROUP`], interleaved lane block by lane block:
/// value `j` of lane block `c` of row `q` of group `g` at
/// `((g·chunks + c)·GROUP + q)·LANES + j`, where `chunks = k / LANES` (the
/// `k mod LANES` tail columns and the `m mod GROUP` last rows stay in `x`).
/// The forward then reads one contiguous stream of `x` per row group
/// instead of eight, through one pointer.
fn pack_rows(x: &[f32], m: usize, k: usize) -> Vec<f32> {
    let chunks = k / LANES;
    let mut packed = Vec::with_capacity(m / GROUP * GROUP * chunks * LANES);
    for g in 0..m / GROUP {
        for c in 0..chunks {
            for q in 0..GROUP {
                let at = (g * GROUP + q) * k + c * LANES;
                packed.extend_from_slice(&x[at..at + LANES]);
            }
        }
    }
    packed
}

/// `acc[q] += x_q·w` for the [`GROUP`] rows of one packed group (`packed`:
/// their lane blocks for the columns of `w`, see [`pack_rows`]), lane by
/// lane: the same lanes and order as [`dots`], so the result is the same.
#[inline(always)]
fn packed_dots(acc: &mut [[f32; LANES]], packed: &[f32], w: &[f32]) {
    let mut a = [[0.0f32; LANES]; GROUP];
    a.copy_from_slice(&acc[..GROUP]);
    for (xs, wv) in packed
        .chunks_exact(GROUP * LANES)
        .zip(w.chunks_exact(LANES))
    {
        for (q, aq) in a.iter_mut().enumerate() {
            let xv = lane(xs, q * LANES);
            for j in 0..LANES {
                aq[j] = xv[j].mul_add(wv[j], aq[j]);
            }
        }
    }
    acc[..GROUP].copy_from_slice(&a);
}

/// Asks for `values` into the second-level cache, one request every 64 bytes.
#[inline(always)]
fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in values.chunks(16) {
        // SAFETY: a prefetch of an address inside a live slice; it reads nothing.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// The operands of one task of [`forward`]: `x` `[M, K]` and its packed
/// row groups, the task's rows `w` of W.
struct ForwardTask<'a> {
    x: &'a [f32],
    packed: &'a [f32],
    w: &'a [f32],
    m: usize,
    k: usize,
}

with_wide_vectors! {
    /// One task of [`forward`]: the rows of W against every row of `x`,
    /// block by block of k, into lanes `acc` `[rows, M]`.
    fn forward_task(task: &ForwardTask<'_>, acc: &mut [[f32; LANES]]) {
        let ForwardTask { x, packed, w, m, k } = *task;
        let (chunks, whole) = (k / LANES, k / LANES * LANES);
        let groups = m / GROUP;
        for k0 in (0..k).step_by(FORWARD_K_BLOCK) {
            let k1 = (k0 + FORWARD_K_BLOCK).min(k);
            // The block's whole lane blocks, then its tail (the last block only).
            let (c0, c1) = (k0 / LANES, k1.min(whole) / LANES);
            for (i, wr) in w.chunks_exact(k).enumerate() {
                // The row's next block, which this task reads after the
                // other rows' current ones: asked for now, so that it is in
                // cache by then. The hardware prefetcher apparently does not
                // keep up with a task's 16 short runs of 2 kB each: without
                // this hint the forward of [8, 132 354]·[512, 132 354]ᵀ read
                // W at 11 GB/s (25 ms on two cores), with it 14–18 ms
                // (bench `skinny`).
                prefetch(&wr[k1..(k1 + FORWARD_K_BLOCK).min(k)]);
                // A row of one block (AFNO's `mlp.3`, rows of 512 values):
                // the rows a few ahead. The hardware prefetcher alone read
                // W of [8, 512]·[132 354, 512]ᵀ at 11–13 GB/s (20.7–24.2 ms
                // on two cores); with this, 4 rows (8 kB) ahead, 14.6–16.4 ms.
                if k <= FORWARD_K_BLOCK {
                    let ahead = (i + AHEAD_ROWS) * k;
                    if ahead < w.len() {
                        prefetch(&w[ahead..ahead + k]);
                    }
                }
                let a = &mut acc[i * m..(i + 1) * m];
                // Eight rows of x per pass: each W lane loaded once serves
                // eight fused multiply-adds, the rows read from one stream.
                for g in 0..groups {
                    let span = GROUP * LANES;
                    let group = &packed[(g * chunks + c0) * span..(g * chunks + c1) * span];
                    packed_dots(&mut a[g * GROUP..], group, &wr[c0 * LANES..c1 * LANES]);
                    if k1 > whole {
                        for q in 0..GROUP {
                            let r = g * GROUP + q;
                            dots::<1>(&mut a[r..], [&x[r * k + whole..r * k + k1]], &wr[whole..k1]);
                        }
                    }
                }
                let (row, wb) = (|r: usize| &x[r * k + k0..r * k + k1], &wr[k0..k1]);
                let mut r = groups * GROUP;
                while r + 4 <= m {
                    dots::<4>(&mut a[r..], [row(r), row(r + 1), row(r + 2), row(r + 3)], wb);
                    r += 4;
                }
                while r < m {
                    dots::<1>(&mut a[r..], [row(r)], wb);
                    r += 1;
                }
            }
        }
    }
}

/// `y[m, o] = Σ_k x[m, k]·w[o, k]`: `[M, O]`.
pub(crate) fn forward(x: &[f32], w: &[f32], m: usize, k: usize, o: usize) -> Vec<f32> {
    let rows = task_rows(k);
    let packed = pack_rows(x, m, k);
    let parts: Vec<Vec<f32>> = w
        .par_chunks(rows * k)
        .map(|wt| {
            let mut acc = vec![[0.0f32; LANES]; wt.len() / k * m];
            let task = ForwardTask {
                x,
                packed: &packed,
                w: wt,
                m,
                k,
            };
            forward_task(&task, &mut acc);
            acc.iter().map(lanes_sum).collect() // [rows, M]
        })
        .collect();
    let mut y = vec![0.0f32; m * o];
    for (t, part) in parts.iter().enumerate() {
        for (i, row) in part.chunks_exact(m).enumerate() {
            for (r, v) in row.iter().enumerate() {
                y[r * o + t * rows + i] = *v;
            }
        }
    }
    y
}

with_wide_vectors! {
    /// One task of [`grad_input`]: `acc` `[M, width]` `+= Σ_o dy[·, o]·w[o, k0..]`
    /// over the rows `o0..o1` of W, four rows per pass over `acc` (the sum
    /// still runs over `o` in order).
    fn grad_input_task(
        dy: &[f32],
        w: &[f32],
        sizes: [usize; 3],
        span: [usize; 3],
        acc: &mut [f32],
    ) {
        let [m, k, o] = sizes;
        let [k0, o0, o1] = span;
        let width = acc.len() / m;
        let whole = width / LANES * LANES;
        let wrow = |r: usize| &w[r * k + k0..r * k + k0 + width];
        let mut r = o0;
        while r + 4 <= o1 {
            let ws = [wrow(r), wrow(r + 1), wrow(r + 2), wrow(r + 3)];
            for (mi, a) in acc.chunks_exact_mut(width).enumerate() {
                let g = [dy[mi * o + r], dy[mi * o + r + 1], dy[mi * o + r + 2], dy[mi * o + r + 3]];
                for c in (0..whole).step_by(LANES) {
                    let mut v = *lane(a, c);
                    for q in 0..4 {
                        let wv = lane(ws[q], c);
                        for j in 0..LANES {
                            v[j] = g[q].mul_add(wv[j], v[j]);
                        }
                    }
                    a[c..c + LANES].copy_from_slice(&v);
                }
                for j in whole..width {
                    for q in 0..4 {
                        a[j] = g[q].mul_add(ws[q][j], a[j]);
                    }
                }
            }
            r += 4;
        }
        while r < o1 {
            let wr = wrow(r);
            for (mi, a) in acc.chunks_exact_mut(width).enumerate() {
                let g = dy[mi * o + r];
                for (s, v) in a.iter_mut().zip(wr) {
                    *s = g.mul_add(*v, *s);
                }
            }
            r += 1;
        }
    }
}

/// `dx[m, k] = Σ_o dy[m, o]·w[o, k]`: `[M, K]`.
pub(crate) fn grad_input(dy: &[f32], w: &[f32], m: usize, k: usize, o: usize) -> Vec<f32> {
    // Blocks of columns, and (when they are few) fixed groups of W's rows
    // whose partial sums are added in group order.
    let col_blocks = k.div_ceil(COL_BLOCK);
    let groups = if col_blocks >= GROUPS {
        1
    } else {
        GROUPS.min(o.div_ceil(MIN_TASK_ROWS))
    };
    let per_group = o.div_ceil(groups);
    let tasks: Vec<(usize, usize)> = (0..col_blocks)
        .flat_map(|c| (0..groups).map(move |g| (c, g)))
        .collect();
    let parts: Vec<Vec<f32>> = tasks
        .par_iter()
        .map(|&(c, g)| {
            let (k0, k1) = (c * COL_BLOCK, ((c + 1) * COL_BLOCK).min(k));
            let (o0, o1) = ((g * per_group).min(o), ((g + 1) * per_group).min(o));
            let mut acc = vec![0.0f32; m * (k1 - k0)];
            grad_input_task(dy, w, [m, k, o], [k0, o0, o1], &mut acc);
            acc
        })
        .collect();
    let mut dx = vec![0.0f32; m * k];
    for (&(c, _), part) in tasks.iter().zip(&parts) {
        let k0 = c * COL_BLOCK;
        let width = part.len() / m;
        for (mi, row) in part.chunks_exact(width).enumerate() {
            for (d, v) in dx[mi * k + k0..mi * k + k0 + width].iter_mut().zip(row) {
                *d += v;
            }
        }
    }
    dx
}

with_wide_vectors! {
    /// One task of [`grad_weight`]: the rows `o0..` of dW in `dt`, each value
    /// `Σ_m dy[m, o]·x[m, k]` summed over `m` in order and written once,
    /// four rows per pass over a block of `x`.
    fn grad_weight_task(
        dy: &[f32],
        x: &[f32],
        sizes: [usize; 3],
        o0: usize,
        dt: &mut [MaybeUninit<f32>],
    ) {
        let [m, k, o] = sizes;
        let g = |mi: usize, r: usize| dy[mi * o + o0 + r];
        let rows = dt.len() / k;
        for k0 in (0..k).step_by(K_BLOCK) {
            let k1 = (k0 + K_BLOCK).min(k);
            let whole = k0 + (k1 - k0) / LANES * LANES;
            let mut r = 0;
            while r + 4 <= rows {
                for c in (k0..whole).step_by(LANES) {
                    let mut v = [[0.0f32; LANES]; 4];
                    for mi in 0..m {
                        let xv = lane(x, mi * k + c);
                        for (q, vq) in v.iter_mut().enumerate() {
                            let gq = g(mi, r + q);
                            for j in 0..LANES {
                                vq[j] = gq.mul_add(xv[j], vq[j]);
                            }
                        }
                    }
                    for (q, vq) in v.iter().enumerate() {
                        for (d, value) in dt[(r + q) * k + c..][..LANES].iter_mut().zip(vq) {
                            d.write(*value);
                        }
                    }
                }
                for c in whole..k1 {
                    for q in 0..4 {
                        let mut s = g(0, r + q) * x[c];
                        for mi in 1..m {
                            s = g(mi, r + q).mul_add(x[mi * k + c], s);
                        }
                        dt[(r + q) * k + c].write(s);
                    }
                }
                r += 4;
            }
            while r < rows {
                for c in k0..k1 {
                    let mut s = g(0, r) * x[c];
                    for mi in 1..m {
                        s = g(mi, r).mul_add(x[mi * k + c], s);
                    }
                    dt[r * k + c].write(s);
                }
                r += 1;
            }
        }
    }
}

/// `dw[o, k] = Σ_m dy[m, o]·x[m, k]`: `[O, K]`, each value written once.
pub(crate) fn grad_weight(dy: &[f32], x: &[f32], m: usize, k: usize, o: usize) -> Vec<f32> {
    if m == 0 {
        // An empty sum: the tasks start each value from the first row.
        return vec![0.0; o * k];
    }
    let rows = task_rows(k);
    // Written in full by the tasks, not zeroed first: at AFNO's sizes that
    // would be one more pass over hundreds of megabytes.
    par_written(o * k, rows * k, |t, dt| {
        grad_weight_task(dy, x, [m, k, o], t * rows, dt)
    })
}

fn dims2(t: &FlexTensor) -> [usize; 2] {
    let s = t.layout().shape();
    [s[0], s[1]]
}

impl SkinnyKernels for Flex {
    fn skinny_linear(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let ([m, k], [o, _]) = (dims2(&x), dims2(&weight));
        let ((x, dtype), (w, _)) = (f32_tensor(x), f32_tensor(weight));
        output(forward(floats(&x), floats(&w), m, k, o), vec![m, o], dtype)
    }

    fn skinny_linear_grad_input(dy: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let ([m, o], [_, k]) = (dims2(&dy), dims2(&weight));
        let ((dy, dtype), (w, _)) = (f32_tensor(dy), f32_tensor(weight));
        output(
            grad_input(floats(&dy), floats(&w), m, k, o),
            vec![m, k],
            dtype,
        )
    }

    fn skinny_linear_grad_weight(dy: FlexTensor, x: FlexTensor) -> FlexTensor {
        let ([m, o], [_, k]) = (dims2(&dy), dims2(&x));
        let ((dy, dtype), (x, _)) = (f32_tensor(dy), f32_tensor(x));
        output(
            grad_weight(floats(&dy), floats(&x), m, k, o),
            vec![o, k],
            dtype,
        )
    }
}

mod autodiff {
    use burn::backend::AutodiffBackend;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::autodiff::{Autodiff, NodeId};
    use burn::backend::tensor::FloatTensor;

    use super::SkinnyKernels;

    #[derive(Debug)]
    struct SkinnyLinearBackward;

    impl<B: SkinnyKernels> Backward<B, 2> for SkinnyLinearBackward {
        /// (x when the weight needs a gradient, the weight when x needs one).
        type State = (Option<NodeId>, Option<NodeId>);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let (x_id, w_id) = ops.state;
            let x: Option<FloatTensor<B>> = x_id.map(|id| checkpointer.retrieve_node_output(id));
            let w: Option<FloatTensor<B>> = w_id.map(|id| checkpointer.retrieve_node_output(id));
            let [x_node, w_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let (Some(node), Some(x)) = (w_node, x) {
                grads.register::<B>(node.id, B::skinny_linear_grad_weight(dy.clone(), x));
            }
            if let (Some(node), Some(w)) = (x_node, w) {
                grads.register::<B>(node.id, B::skinny_linear_grad_input(dy, w));
            }
        }
    }

    impl<B: SkinnyKernels, C: CheckpointStrategy> SkinnyKernels for Autodiff<B, C> {
        fn skinny_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
            let (x_tracked, w_tracked) = (x.is_tracked(), weight.is_tracked());
            match SkinnyLinearBackward
                .prepare::<C>([x.node(), weight.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = w_tracked.then(|| prep.checkpoint(&x));
                    let w_state = x_tracked.then(|| prep.checkpoint(&weight));
                    let y = B::skinny_linear(x.into_primitive(), weight.into_primitive());
                    prep.finish((x_state, w_state), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::skinny_linear(
                    x.into_primitive(),
                    weight.into_primitive(),
                )),
            }
        }

        fn skinny_linear_grad_input(
            dy: FloatTensor<Self>,
            weight: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            // Gradients of gradients are not needed by any layer here: the
            // result is a constant of the graph.
            Self::from_inner(B::skinny_linear_grad_input(
                dy.into_primitive(),
                weight.into_primitive(),
            ))
        }

        fn skinny_linear_grad_weight(
            dy: FloatTensor<Self>,
            x: FloatTensor<Self>,
        ) -> FloatTensor<Self> {
            Self::from_inner(B::skinny_linear_grad_weight(
                dy.into_primitive(),
                x.into_primitive(),
            ))
        }
    }
}

/// Whether [`linear`] runs natively on `device` (burn's CPU backend, with
/// or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

/// Whether a product of `rows` rows against a `[O, K]` weight of `weights`
/// values is better done by [`linear`] than by a general matrix kernel.
pub fn worthwhile(rows: usize, weights: usize) -> bool {
    rows <= MAX_ROWS && weights >= MIN_WEIGHTS
}

/// `x` `[M, K]` · `weight` `[O, K]`ᵀ → `[M, O]`, differentiable in both,
/// streaming `weight` once (see the module's description). Fast for few
/// rows ([`worthwhile`]); correct for any.
///
/// An error when the device has no native kernel ([`available`]) or when
/// the two `K` differ.
pub fn linear(x: Tensor<2>, weight: Tensor<2>) -> Result<Tensor<2>> {
    require_flex(&x.device(), "the skinny linear kernel runs")?;
    let ([_, k], [_, kw]) = (x.dims(), weight.dims());
    if k != kw {
        return Err(Error::Shape {
            context: "skinny linear".into(),
            expected: format!("a weight [O, {k}] for an input [M, {k}]"),
            got: format!("input {:?}, weight {:?}", x.dims(), weight.dims()),
        });
    }
    if x.dims().contains(&0) || weight.dims().contains(&0) {
        // Nothing to stream (the kernels split work by rows of K values):
        // burn's product gives the empty or zero result and its gradients.
        return Ok(x.matmul(weight.transpose()));
    }
    Ok(Tensor::from_dispatch(Dispatch::skinny_linear(
        x.into_dispatch(),
        weight.into_dispatch(),
    )))
}
