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
use std::mem::MaybeUninit;

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

/// A result `[shape]` in `dtype`.
pub(crate) fn output(values: Vec<f32>, shape: Vec<usize>, dtype: DType) -> FlexTensor {
    let t = FlexTensor::from_data(TensorData::new(values, shape));
    if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, dtype.into())
    }
}

/// A result buffer of `n` floats left unwritten, for kernels that write
/// every element themselves: zeroing a large buffer first would be a serial
/// pass over memory that the parallel kernel then overwrites anyway.
fn unwritten(n: usize) -> Vec<MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit` elements need no initialisation.
    unsafe { v.set_len(n) };
    v
}

/// The floats of a buffer from [`unwritten`].
///
/// # Safety
/// Every element must have been written.
unsafe fn written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller
    // guarantees every element is initialised; the allocation is handed over.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<f32>(), v.len(), v.capacity()) }
}

/// A part of a buffer from [`unwritten`] whose elements have all been written.
///
/// # Safety
/// Every element of `part` must have been written.
unsafe fn written_part(part: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: as in `written`.
    unsafe { &mut *(part as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A row of a buffer from [`unwritten`] set to zeros (while it is about to
/// be summed into, so in cache), as floats.
fn zeroed(row: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for d in row.iter_mut() {
        d.write(0.0);
    }
    // SAFETY: written just above.
    unsafe { written_part(row) }
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
    let mut y = unwritten(rows * f);
    y.par_chunks_mut(tile * f).enumerate().for_each_init(
        || vec![0f32; tile * kc],
        |buf, (t, y_tile)| {
            let m = y_tile.len() / f;
            gather_rows(buf, x, idx, w, s, t * tile, m);
            prefetch_rows(x, idx, s, (t + 1) * tile, tile);
            if let Some(bias) = bias {
                for row in y_tile.chunks_exact_mut(f) {
                    for (d, b) in row.iter_mut().zip(bias) {
                        d.write(*b);
                    }
                }
            }
            // SAFETY: buf is [m, kc], kernel [kc, f], y_tile [m, f], all
            // row-major. Without a bias the product does not read y_tile
            // (gemm's `read_dst` false) and writes all of it, zeros when kc
            // is 0; with one, every element was written just above.
            unsafe {
                matmul(
                    (m, f, kc),
                    y_tile.as_mut_ptr().cast::<f32>(),
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
    // SAFETY: every tile of rows was written whole by its product.
    unsafe { written(y) }
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

/// The input gradient splits into at least this many (batch, part) tasks.
const GRAD_INPUT_TASKS: usize = 8;
/// Parts of the input gradient are at least this many input rows.
const MIN_PART_ROWS: usize = 512;
/// Bytes of `G = dY·Kᵀ` rows one product of the input gradient makes.
const G_TILE_BYTES: usize = 512 * 1024;

/// One part of the input rows, `i0..i1`: its reverse edges as `(edge, local
/// input row)` in ascending edge order, i.e. by output pixel `p = edge / k`
/// and then slot `j = edge % k`.
fn part_edges(offsets: &[i64], edges: &[i64], i0: usize, i1: usize) -> Vec<(usize, usize)> {
    let part = &edges[offsets[i0] as usize..offsets[i1] as usize];
    let (Some(&lo), Some(&hi)) = (part.iter().min(), part.iter().max()) else {
        return Vec::new();
    };
    let (lo, span) = (lo as usize, (hi - lo) as usize + 1);
    let rows = (i0..i1).flat_map(|i| {
        let row = &edges[offsets[i] as usize..offsets[i + 1] as usize];
        row.iter().map(move |&e| (e as usize, i - i0))
    });
    if span > 8 * part.len() + 4096 {
        // Edges spread over the whole graph (a graph without locality): sort.
        let mut list: Vec<(usize, usize)> = rows.collect();
        list.sort_unstable();
        return list;
    }
    // A local graph (every HEALPix graph): place each edge at its offset in
    // the part's edge range and read the range in order, O(edges + span).
    let mut table = vec![usize::MAX; span];
    for (e, local) in rows {
        table[e - lo] = local;
    }
    let mut list = Vec::with_capacity(part.len());
    for (off, &local) in table.iter().enumerate() {
        if local != usize::MAX {
            list.push((lo + off, local));
        }
    }
    list
}

/// `[B, N_in, C]`: `dX[b,i] = Σ_(p,j) reading i  w[p,j]·(dY[b,p]·K_jᵀ)`.
///
/// The input rows of each batch item split into parts (their size depends
/// on the tensor sizes only, never on the thread count). A part walks the
/// output pixels that read it in ascending order, a tile at a time: one
/// matrix product `G = dY[tile]·Kᵀ` (`[rows, k·C]`, every slot at once, on
/// contiguous `dY` rows where the pixels are consecutive) and then each of
/// the part's edges adds its slot's block of `G` to its input row (a row's
/// first edge stores it, and rows no edge reads are set to zero at the end:
/// `dX` is never zeroed beforehand, which was a serial pass over memory and
/// made every first edge wait on the row's old contents). Every
/// input row receives its edges in ascending edge order, so the result is
/// bitwise the same from run to run and for any number of threads. Output
/// pixels read by two parts are multiplied twice; with parts of thousands
/// of rows on a local graph that is a few percent. Compared with one product
/// per slot over gathered `dY` rows, this copies no `dY` row where pixels
/// are consecutive and multiplies `k·C` columns at once.
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
    let kc = k * c;
    let len = s.batch * s.n_in * c;
    if len == 0 || f == 0 || k == 0 {
        return vec![0f32; len];
    }
    let mut dx = unwritten(len);
    let part_rows = s
        .n_in
        .div_ceil(GRAD_INPUT_TASKS.div_ceil(s.batch))
        .max(MIN_PART_ROWS)
        .min(s.n_in);
    let parts: Vec<Vec<(usize, usize)>> = (0..s.n_in.div_ceil(part_rows))
        .into_par_iter()
        .map(|q| {
            part_edges(
                offsets,
                edges,
                q * part_rows,
                ((q + 1) * part_rows).min(s.n_in),
            )
        })
        .collect();
    let tile = (G_TILE_BYTES / (4 * kc)).clamp(128, 512);
    let tasks: Vec<(usize, usize, &mut [MaybeUninit<f32>])> = dx
        .chunks_mut(s.n_in * c)
        .enumerate()
        .flat_map(|(b, dx_b)| {
            dx_b.chunks_mut(part_rows * c)
                .enumerate()
                .map(move |(q, part)| (b, q, part))
        })
        .collect();
    tasks.into_par_iter().for_each_init(
        || (vec![0f32; tile * f], vec![0f32; tile * kc], Vec::new()),
        |(a, g, rows_written), (b, q, dx_part)| {
            let list = &parts[q];
            rows_written.clear();
            rows_written.resize(dx_part.len() / c, false);
            let dy_b = &dy[b * s.n_out * f..(b + 1) * s.n_out * f];
            let mut pos = 0;
            while pos < list.len() {
                // The next `tile` distinct output pixels of the list.
                let first = list[pos].0 / k;
                let (mut end, mut rows, mut last) = (pos, 0, usize::MAX);
                while end < list.len() {
                    let p = list[end].0 / k;
                    if p != last {
                        if rows == tile {
                            break;
                        }
                        rows += 1;
                        last = p;
                    }
                    end += 1;
                }
                // Consecutive pixels are read in place; others gathered.
                let lhs = if last + 1 - first == rows {
                    dy_b[first * f..].as_ptr()
                } else {
                    let mut l = 0;
                    let mut prev = usize::MAX;
                    for &(e, _) in &list[pos..end] {
                        let p = e / k;
                        if p != prev {
                            a[l * f..(l + 1) * f].copy_from_slice(&dy_b[p * f..(p + 1) * f]);
                            l += 1;
                            prev = p;
                        }
                    }
                    a.as_ptr()
                };
                // SAFETY: lhs addresses `rows` rows of f floats (in dY or
                // in `a`); rhs = Kᵀ ([f, kc]: element (f', jc) at
                // kernel[jc·F + f']); g holds tile ≥ rows rows of kc.
                unsafe {
                    matmul(
                        (rows, kc, f),
                        g.as_mut_ptr(),
                        kc,
                        false,
                        lhs,
                        (f, 1),
                        kernel.as_ptr(),
                        (1, f),
                    )
                }
                let mut l = usize::MAX;
                let mut prev = usize::MAX;
                for &(e, local) in &list[pos..end] {
                    let (p, j) = (e / k, e % k);
                    if p != prev {
                        l = l.wrapping_add(1);
                        prev = p;
                    }
                    let src = &g[l * kc + j * c..][..c];
                    let dst = &mut dx_part[local * c..][..c];
                    let we = w.map(|w| w[e]);
                    if std::mem::replace(&mut rows_written[local], true) {
                        // SAFETY: the row's first edge wrote all of it.
                        let dst = unsafe { written_part(dst) };
                        match we {
                            Some(we) => dst.iter_mut().zip(src).for_each(|(d, v)| *d += we * v),
                            None => dst.iter_mut().zip(src).for_each(|(d, v)| *d += v),
                        }
                    } else {
                        // A row's first edge stores: no zeroing beforehand,
                        // and no wait on the row's old contents.
                        match we {
                            Some(we) => dst.iter_mut().zip(src).for_each(|(d, v)| {
                                d.write(we * v);
                            }),
                            None => dst.iter_mut().zip(src).for_each(|(d, v)| {
                                d.write(*v);
                            }),
                        }
                    }
                }
                pos = end;
            }
            // Rows no edge reads.
            for (row, _) in rows_written.iter().enumerate().filter(|(_, w)| !**w) {
                dx_part[row * c..][..c].iter_mut().for_each(|d| {
                    d.write(0.0);
                });
            }
        },
    );
    // SAFETY: the tasks cover dX, and each wrote every row of its part.
    unsafe { written(dx) }
}

/// `[B, N_out, C]`: `Σ_j w[p,j]·X[b, idx[p,j]]`.
fn sum_forward(x: &[f32], idx: &[i64], w: &[f32], s: Sizes) -> Vec<f32> {
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_out;
    let tile = tile_rows(c);
    let mut y = unwritten(rows * c);
    y.par_chunks_mut(tile * c)
        .enumerate()
        .for_each(|(t, y_tile)| {
            for (r, dst) in y_tile.chunks_mut(c).enumerate() {
                let dst = zeroed(dst);
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
    // SAFETY: every row was zeroed, then summed into.
    unsafe { written(y) }
}

/// `[B, N_in, C]`: `Σ_{(p,j) → i} w[p,j]·dY[b, p]`, edges in ascending order.
fn sum_grad_input(dy: &[f32], offsets: &[i64], edges: &[i64], w: &[f32], s: Sizes) -> Vec<f32> {
    let (c, k) = (s.channels, s.k);
    let rows = s.batch * s.n_in;
    let tile = tile_rows(c);
    let mut dx = unwritten(rows * c);
    dx.par_chunks_mut(tile * c)
        .enumerate()
        .for_each(|(t, dx_tile)| {
            for (r, dst) in dx_tile.chunks_mut(c).enumerate() {
                let dst = zeroed(dst);
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
    // SAFETY: every row was zeroed, then summed into.
    unsafe { written(dx) }
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
