//! The input gradient of gather-contract, gathered through the reverse graph.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::buffer::{matmul, unwritten, written, written_part};
use crate::check::{GatherError, GatherSizes, product};

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

/// The input gradient `dX` `[B, N_in, C]` of [`contract_forward`](crate::contract_forward):
/// `dX[b,i] = Σ_(p,j) reading i  w[p,j]·(dY[b,p]·K_jᵀ)`, from `dy`
/// `[B, N_out, F]`, the graph's [`ReverseGraph`](crate::ReverseGraph)
/// (`offsets`, `edges`), the optional edge weights `w` `[N_out, k]` and
/// `kernel` `[k·C, F]`.
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
///
/// # Errors
/// A slice whose length does not fit `s` and `f`, or a reverse graph that is
/// not one of an `[N_out, k]` graph on `N_in` input pixels.
#[allow(clippy::too_many_arguments)]
pub fn contract_grad_input(
    dy: &[f32],
    offsets: &[i64],
    edges: &[i64],
    w: Option<&[f32]>,
    kernel: &[f32],
    s: GatherSizes,
    f: usize,
) -> Result<Vec<f32>, GatherError> {
    s.expect_len("dy", dy, &[s.batch, s.n_out, f], "[B, N_out, F]")?;
    s.check_reverse(offsets, edges)?;
    s.check_weights(w)?;
    s.expect_len("kernel", kernel, &[s.k, s.channels, f], "[k·C, F]")?;
    let len = product(&[s.batch, s.n_in, s.channels], &s)?;
    let (c, k) = (s.channels, s.k);
    let kc = k * c;
    if len == 0 || f == 0 || k == 0 {
        return Ok(vec![0f32; len]);
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
    Ok(unsafe { written(dx) })
}
