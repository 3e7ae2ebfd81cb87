//! The fused kernels on burn's CPU backend (flex).
//!
//! Rows are cut into fixed tiles (their size depends on the problem, never on
//! the number of threads). Each tile gathers its neighbourhoods into a small
//! buffer that stays in cache, and `gemm` (the matrix kernel flex itself uses)
//! contracts it with the kernel; tiles run in parallel on rayon's pool. The
//! kernel gradient sums fixed groups of tiles, then the groups in order; the
//! input gradient owns its tile of input pixels and gathers through the
//! reverse graph. Every sum therefore has a fixed order: results are bitwise
//! the same for any number of threads.
//!
//! The kernels compute in f32; other float dtypes are converted on the way in
//! and out.

use std::borrow::Cow;

use burn::backend::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorData};
use burn_flex::{Flex, FlexTensor};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;

use super::GraphKernels;

/// Bytes of gathered rows a tile aims for: well inside a core's L2 cache.
const TILE_BYTES: usize = 96 * 1024;
/// Tiles of the kernel gradient are summed in at most this many fixed groups.
const GRAD_GROUPS: usize = 16;

/// Rows per tile for rows of `row_len` floats.
fn tile_rows(row_len: usize) -> usize {
    (TILE_BYTES / (4 * row_len.max(1))).clamp(8, 512)
}

/// A float tensor as contiguous f32, with its original dtype.
fn f32_tensor(t: FlexTensor) -> (FlexTensor, DType) {
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

fn floats(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("contiguous f32 after f32_tensor")
}

/// An int tensor's values as i64 (borrowed when they already are).
fn ints(t: &FlexTensor) -> Cow<'_, [i64]> {
    match t.as_slice::<i64>() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(
            t.clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("graph indices convert to i64"),
        ),
    }
}

/// A result `[shape]` in `dtype`.
fn output(values: Vec<f32>, shape: Vec<usize>, dtype: DType) -> FlexTensor {
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

/// `dst[m×n] (+)= lhs[m×k]·rhs[k×n]`, each operand given by its pointer and
/// (row, column) strides, on the calling thread.
///
/// # Safety
/// The pointers and strides must address valid memory for the given sizes,
/// and `dst` must not overlap the operands.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: *const f32,
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The sizes of a gather: `[B, N_in, C]` input, `[N_out, k]` graph.
#[derive(Clone, Copy)]
struct Sizes {
    batch: usize,
    n_in: usize,
    channels: usize,
    n_out: usize,
    k: usize,
}

impl Sizes {
    fn new(batch: usize, n_in: usize, channels: usize, n_out: usize, k: usize) -> Self {
        Self {
            batch,
            n_in,
            channels,
            n_out,
            k,
        }
    }
}

/// Gathers output rows `r0..r0 + m` (flat over batch and output pixel) into
/// `buf` as `[m, k·C]`, scaled by the edge weights when given.
fn gather_rows(
    buf: &mut [f32],
    x: &[f32],
    idx: &[i64],
    w: Option<&[f32]>,
    s: Sizes,
    r0: usize,
    m: usize,
) {
    let (c, k) = (s.channels, s.k);
    for r in 0..m {
        let row = r0 + r;
        let (b, p) = (row / s.n_out, row % s.n_out);
        let x_b = &x[b * s.n_in * c..(b + 1) * s.n_in * c];
        for j in 0..k {
            let e = p * k + j;
            let src = &x_b[idx[e] as usize * c..][..c];
            let dst = &mut buf[(r * k + j) * c..][..c];
            match w {
                Some(w) => {
                    let we = w[e];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d = we * v;
                    }
                }
                None => dst.copy_from_slice(src),
            }
        }
    }
}

/// Asks the cache for the input rows that output rows `r0..r0 + m` read.
///
/// A tile's gather reads rows scattered over `x` (tens of MB for a large
/// batch), so each copy waits on memory; announcing the next tile's rows
/// before the current tile's matrix product lets those loads arrive while
/// the core computes. Only a hint: a no-op off x86-64.
fn prefetch_rows(x: &[f32], idx: &[i64], s: Sizes, r0: usize, m: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let (c, k) = (s.channels, s.k);
        let end = (r0 + m).min(s.batch * s.n_out);
        for row in r0..end {
            let (b, p) = (row / s.n_out, row % s.n_out);
            for &i in &idx[p * k..(p + 1) * k] {
                let start = (b * s.n_in + i as usize) * c;
                // One hint per 64-byte line of the row (16 floats).
                for off in (0..c).step_by(16) {
                    // SAFETY: prefetching has no architectural effect; the
                    // address lies inside `x` (start + off < len).
                    unsafe { _mm_prefetch::<_MM_HINT_T1>(x.as_ptr().add(start + off).cast()) };
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (x, idx, s, r0, m);
}

/// `[B, N_out, F]` from `x` `[B, N_in, C]`, `kernel` `[k·C, F]` and an
/// optional `bias` `[F]`, which each tile's rows start from (in cache) so the
/// product accumulates onto it: no separate pass over the output.
#[allow(clippy::too_many_arguments)]
fn contract_forward(
    x: &[f32],
    idx: &[i64],
    w: Option<&[f32]>,
    kernel: &[f32],
    bias: Option<&[f32]>,
    s: Sizes,
    f: usize,
) -> Vec<f32> {
    let kc = s.k * s.channels;
    let rows = s.batch * s.n_out;
    let tile = tile_rows(kc);
    let mut y = vec![0f32; rows * f];
    y.par_chunks_mut(tile * f).enumerate().for_each_init(
        || vec![0f32; tile * kc],
        |buf, (t, y_tile)| {
            let m = y_tile.len() / f;
            gather_rows(buf, x, idx, w, s, t * tile, m);
            prefetch_rows(x, idx, s, (t + 1) * tile, tile);
            if let Some(bias) = bias {
                for row in y_tile.chunks_exact_mut(f) {
                    row.copy_from_slice(bias);
                }
            }
            // SAFETY: buf is [m, kc], kernel [kc, f], y_tile [m, f], all row-major.
            unsafe {
                matmul(
                    (m, f, kc),
                    y_tile.as_mut_ptr(),
                    f,
                    bias.is_some(),
                    buf.as_ptr(),
                    (kc, 1),
                    kernel.as_ptr(),
                    (f, 1),
                )
            }
        },
    );
    y
}

/// `[k·C, F]`: `Σ_rows gathered[row]ᵀ·dY[row]`, over fixed groups of tiles
/// summed in group order.
fn contract_grad_kernel(
    x: &[f32],
    idx: &[i64],
    w: Option<&[f32]>,
    dy: &[f32],
    s: Sizes,
    f: usize,
) -> Vec<f32> {
    let kc = s.k * s.channels;
    let rows = s.batch * s.n_out;
    let tile = tile_rows(kc.max(f));
    let tiles = rows.div_ceil(tile);
    let groups = tiles.clamp(1, GRAD_GROUPS);
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut acc = vec![0f32; kc * f];
            let mut buf = vec![0f32; tile * kc];
            let (t0, t1) = (g * tiles / groups, (g + 1) * tiles / groups);
            for t in t0..t1 {
                let r0 = t * tile;
                let m = tile.min(rows - r0);
                gather_rows(&mut buf, x, idx, w, s, r0, m);
                if t + 1 < t1 {
                    prefetch_rows(x, idx, s, r0 + tile, tile);
                }
                // SAFETY: lhs = bufᵀ ([kc, m], buf row-major [m, kc]),
                // rhs = dY rows r0.. ([m, f]), acc [kc, f].
                unsafe {
                    matmul(
                        (kc, f, m),
                        acc.as_mut_ptr(),
                        f,
                        t > t0,
                        buf.as_ptr(),
                        (1, kc),
                        dy[r0 * f..].as_ptr(),
                        (f, 1),
                    )
                }
            }
            acc
        })
        .collect();
    let mut iter = partials.into_iter();
    let mut total = iter.next().unwrap_or_else(|| vec![0f32; kc * f]);
    for part in iter {
        for (t, p) in total.iter_mut().zip(&part) {
            *t += p;
        }
    }
    total
}

/// `[B, N_in, C]`: each input pixel gathers `w·dY[p]·K_jᵀ` over its reverse
/// edges. A tile of input rows groups its edges by kernel slot `j`, so each
/// slot is one matrix product; rows then add their slots in ascending `j`,
/// and within a slot their edges in ascending order.
#[allow(clippy::too_many_arguments)]
fn contract_grad_input(
    dy: &[f32],
    offsets: &[i64],
    edges: &[i64],
    w: Option<&[f32]>,
    kernel: &[f32],
    s: Sizes,
    f: usize,
) -> Vec<f32> {
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_in;
    // A tile's edges split into k per-slot products; size the tile so that
    // each slot's operand (its edges' dY rows) fills about one cache tile:
    // products of a few dozen rows leave the matrix kernel mostly overhead.
    let edges_per_slot_row = (s.n_out as f64 / s.n_in.max(1) as f64).max(1.0 / 64.0);
    let slot_rows = TILE_BYTES / (4 * f.max(c).max(1));
    let tile = ((slot_rows as f64 / edges_per_slot_row) as usize).clamp(8, 4096);
    let mut dx = vec![0f32; rows * c];
    struct Scratch {
        /// Per slot: (local row, dY row, weight) of each edge.
        lists: Vec<Vec<(u32, u32, f32)>>,
        a: Vec<f32>,
        r: Vec<f32>,
    }
    dx.par_chunks_mut(tile * c).enumerate().for_each_init(
        || Scratch {
            lists: vec![Vec::new(); k],
            a: Vec::new(),
            r: Vec::new(),
        },
        |sc, (t, dx_tile)| {
            let m = dx_tile.len() / c;
            let r0 = t * tile;
            for list in sc.lists.iter_mut() {
                list.clear();
            }
            for r in 0..m {
                let row = r0 + r;
                let (b, i) = (row / s.n_in, row % s.n_in);
                for &e in &edges[offsets[i] as usize..offsets[i + 1] as usize] {
                    let e = e as usize;
                    let (p, j) = (e / k, e % k);
                    let we = w.map_or(1.0, |w| w[e]);
                    sc.lists[j].push((r as u32, (b * s.n_out + p) as u32, we));
                }
            }
            for j in 0..k {
                let list = &sc.lists[j];
                let mj = list.len();
                if mj == 0 {
                    continue;
                }
                sc.a.resize(mj * f, 0.0);
                sc.r.resize(mj * c, 0.0);
                for (l, &(_, dy_row, we)) in list.iter().enumerate() {
                    let src = &dy[dy_row as usize * f..][..f];
                    let dst = &mut sc.a[l * f..][..f];
                    if w.is_some() {
                        for (d, v) in dst.iter_mut().zip(src) {
                            *d = we * v;
                        }
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
                // SAFETY: a [mj, f]; rhs = K_jᵀ ([f, c]: element (f', c') at
                // kernel[(j·C + c')·F + f']); r [mj, c].
                unsafe {
                    matmul(
                        (mj, c, f),
                        sc.r.as_mut_ptr(),
                        c,
                        false,
                        sc.a.as_ptr(),
                        (f, 1),
                        kernel[j * c * f..].as_ptr(),
                        (1, f),
                    )
                }
                for (l, &(local, _, _)) in list.iter().enumerate() {
                    let dst = &mut dx_tile[local as usize * c..][..c];
                    for (d, v) in dst.iter_mut().zip(&sc.r[l * c..(l + 1) * c]) {
                        *d += v;
                    }
                }
            }
        },
    );
    dx
}

/// `[B, N_out, C]`: `Σ_j w[p,j]·X[b, idx[p,j]]`.
fn sum_forward(x: &[f32], idx: &[i64], w: &[f32], s: Sizes) -> Vec<f32> {
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_out;
    let tile = tile_rows(c);
    let mut y = vec![0f32; rows * c];
    y.par_chunks_mut(tile * c)
        .enumerate()
        .for_each(|(t, y_tile)| {
            for (r, dst) in y_tile.chunks_mut(c).enumerate() {
                let row = t * tile + r;
                let (b, p) = (row / s.n_out, row % s.n_out);
                for j in 0..k {
                    let e = p * k + j;
                    let src = &x[(b * s.n_in + idx[e] as usize) * c..][..c];
                    let we = w[e];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += we * v;
                    }
                }
            }
        });
    y
}

/// `[B, N_in, C]`: `Σ_{(p,j) → i} w[p,j]·dY[b, p]`, edges in ascending order.
fn sum_grad_input(dy: &[f32], offsets: &[i64], edges: &[i64], w: &[f32], s: Sizes) -> Vec<f32> {
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_in;
    let tile = tile_rows(c);
    let mut dx = vec![0f32; rows * c];
    dx.par_chunks_mut(tile * c)
        .enumerate()
        .for_each(|(t, dx_tile)| {
            for (r, dst) in dx_tile.chunks_mut(c).enumerate() {
                let row = t * tile + r;
                let (b, i) = (row / s.n_in, row % s.n_in);
                for &e in &edges[offsets[i] as usize..offsets[i + 1] as usize] {
                    let e = e as usize;
                    let src = &dy[(b * s.n_out + e / k) * c..][..c];
                    let we = w[e];
                    for (d, v) in dst.iter_mut().zip(src) {
                        *d += we * v;
                    }
                }
            }
        });
    dx
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
        let s = Sizes::new(batch, n_in, channels, n_out, k);
        let y = contract_forward(
            floats(&x),
            &idx,
            weighted.then(|| floats(&w)),
            floats(&kernel),
            biased.then(|| floats(&bias)),
            s,
            f,
        );
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
        let s = Sizes::new(batch, n_in, channels, n_out, k);
        let dx = contract_grad_input(
            floats(&dy),
            &ints(&rev_offsets),
            &ints(&rev_edges),
            weighted.then(|| floats(&w)),
            floats(&kernel),
            s,
            f,
        );
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
        let s = Sizes::new(batch, n_in, channels, n_out, k);
        let dk = contract_grad_kernel(
            floats(&x),
            &ints(&indices),
            weighted.then(|| floats(&w)),
            floats(&dy),
            s,
            f,
        );
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
        let s = Sizes::new(batch, n_in, channels, n_out, k);
        let y = sum_forward(floats(&x), &ints(&indices), floats(&w), s);
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
        let s = Sizes::new(batch, n_in, channels, n_out, k);
        let dx = sum_grad_input(
            floats(&dy),
            &ints(&rev_offsets),
            &ints(&rev_edges),
            floats(&w),
            s,
        );
        output(dx, vec![batch, n_in, channels], dtype)
    }
}
