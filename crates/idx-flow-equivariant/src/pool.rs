//! [`MaxNormPool`]: ginjax's equivariant max pooling. Per channel and
//! non-overlapping patch of `p^D` cells, the whole tensor of the cell with the
//! largest Frobenius norm is kept (the first such cell in row-major order on
//! ties); for scalars that is the value of largest `|x|`, sign included.
//! Norms do not change under the group, so the pooled image of a transformed
//! input is the transformed pooled image (on grids divisible by `p`, away
//! from ties).
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_equivariant::{MaxNormPool, MultiImage, TensorKey};
//!
//! let device = Device::default();
//! let v = vec![1.0, -3.0, 2.0, 0.5];
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::from_data(TensorData::new(v, [1, 1, 2, 2]), &device))?;
//! let y = MaxNormPool::new(2).try_forward(x)?;
//! assert_eq!(y.get(TensorKey::SCALAR).unwrap().clone().into_scalar::<f32>(), -3.0);
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};

use super::image::MultiImage;
use crate::{Error, Result};

/// ginjax's `MaxNormPool` (with `use_norm=True`; see the [module docs](self)).
#[derive(Module, Debug)]
pub struct MaxNormPool {
    /// Side `p` of the patches.
    pub patch: usize,
}

impl MaxNormPool {
    /// Pools patches of side `patch` (≥ 1).
    pub fn new(patch: usize) -> Self {
        MaxNormPool { patch }
    }

    /// Blocks `[B, C·D^k, *N]` → `[B, C·D^k, *N/p]`. An error when `p` is 0
    /// or does not divide every axis.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let p = self.patch;
        if let Some(n) = x.spatial_dims()
            && (p == 0 || n.iter().any(|&a| !a.is_multiple_of(p)))
        {
            return Err(Error::Shape {
                context: "MaxNormPool input".into(),
                expected: format!("a grid divisible by the patch side {p} (≥ 1)"),
                got: format!("{n:?}"),
            });
        }
        let d = x.d();
        let mut out = x.empty_like();
        for (k, t) in x.iter() {
            let dims = t.dims();
            let comps = k.components(d);
            let (b, c) = (dims[0], dims[1] / comps);
            let grid = &dims[2..];
            let cells: usize = grid.iter().product();
            let coarse: Vec<usize> = grid.iter().map(|n| n / p).collect();
            let patches: usize = coarse.iter().product();
            let t4: Tensor<4> = t.clone().reshape([b, c, comps, cells]);
            let norms: Vec<f32> = t4
                .clone()
                .detach()
                .powi_scalar(2)
                .sum_dim(2)
                .sqrt()
                .into_data()
                .convert::<f32>()
                .iter::<f32>()
                .collect();
            let members = patch_members(grid, p);
            let mut idx = Vec::with_capacity(b * c * comps * patches);
            for bc in 0..b * c {
                let row = &norms[bc * cells..(bc + 1) * cells];
                let best: Vec<i64> = members
                    .iter()
                    .map(|m| {
                        let mut at = m[0];
                        for &cell in &m[1..] {
                            if row[cell] > row[at] {
                                at = cell;
                            }
                        }
                        at as i64
                    })
                    .collect();
                for _ in 0..comps {
                    idx.extend_from_slice(&best);
                }
            }
            let idx = Tensor::<4, Int>::from_data(
                TensorData::new(idx, [b, c, comps, patches]),
                &t4.device(),
            );
            let mut shape = [0usize; R];
            shape[0] = b;
            shape[1] = c * comps;
            shape[2..].copy_from_slice(&coarse);
            out.insert(k, t4.gather(3, idx).reshape(shape))?;
        }
        Ok(out)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

/// The cells (row-major flat indices) of each patch, patches and cells in row-major order.
fn patch_members(grid: &[usize], p: usize) -> Vec<Vec<usize>> {
    let d = grid.len();
    let coarse: Vec<usize> = grid.iter().map(|n| n / p).collect();
    let patches: usize = coarse.iter().product();
    let per = p.pow(d as u32);
    (0..patches)
        .map(|q| {
            let mut pc = vec![0; d];
            let mut r = q;
            for a in (0..d).rev() {
                pc[a] = r % coarse[a];
                r /= coarse[a];
            }
            (0..per)
                .map(|o| {
                    let mut off = vec![0; d];
                    let mut r = o;
                    for a in (0..d).rev() {
                        off[a] = r % p;
                        r /= p;
                    }
                    (0..d).fold(0, |acc, a| acc * grid[a] + pc[a] * p + off[a])
                })
                .collect()
        })
        .collect()
}
