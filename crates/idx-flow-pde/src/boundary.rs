//! Padding of the spatial axes by boundary condition, as pdequinox pads
//! (`jnp.pad` modes `wrap`, zeros, `reflect`).
//!
//! | mode | pdequinox name | padding | `[a b c d]` padded by 2 |
//! |---|---|---|---|
//! | [`BoundaryMode::Periodic`] | `periodic` (`circular`) | wrap around | `c d a b c d a b` |
//! | [`BoundaryMode::Dirichlet`] | `dirichlet` (`zeros`) | zeros | `0 0 a b c d 0 0` |
//! | [`BoundaryMode::Neumann`] | `neumann` (`reflect`) | mirror without repeating the edge | `c b a b c d c b` |
//!
//! Pads wider than the axis continue the pattern (numpy's rule). Padding is a
//! `select` along each axis (or a `cat` of zeros), so gradients flow through it.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_pde::{BoundaryMode, pad};
//!
//! let device = Device::default();
//! let x = Tensor::<3>::from_floats([[[1.0, 2.0, 3.0, 4.0]]], &device);
//! let wrap = pad(x.clone(), &[(2, 2)], BoundaryMode::Periodic);
//! assert_eq!(wrap.to_data().to_vec::<f32>().unwrap(), [3., 4., 1., 2., 3., 4., 1., 2.]);
//! let mirror = pad(x, &[(2, 2)], BoundaryMode::Neumann);
//! assert_eq!(mirror.to_data().to_vec::<f32>().unwrap(), [3., 2., 1., 2., 3., 4., 3., 2.]);
//! ```

use std::str::FromStr;

use burn::config::Config;
use burn::tensor::{Int, Tensor, TensorData};

use crate::{Error, Result};

/// The boundary condition of a field, which decides how convolutions pad it.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum BoundaryMode {
    /// The grid is a torus: wrap around (pdequinox `"periodic"`, Equinox `"circular"`).
    Periodic,
    /// The field is zero outside the grid (pdequinox `"dirichlet"`, zero padding).
    Dirichlet,
    /// Mirror at the edge without repeating it (pdequinox `"neumann"`, numpy `"reflect"`).
    Neumann,
}

impl BoundaryMode {
    /// All modes.
    pub const ALL: [BoundaryMode; 3] = [
        BoundaryMode::Periodic,
        BoundaryMode::Dirichlet,
        BoundaryMode::Neumann,
    ];

    /// pdequinox's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BoundaryMode::Periodic => "periodic",
            BoundaryMode::Dirichlet => "dirichlet",
            BoundaryMode::Neumann => "neumann",
        }
    }
}

impl FromStr for BoundaryMode {
    type Err = Error;
    /// pdequinox's names, in any case (it lower-cases them too).
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_lowercase();
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == lower)
            .ok_or_else(|| {
                Error::arg(
                    "boundary_mode",
                    format!("unknown boundary mode '{s}', expected periodic, dirichlet or neumann"),
                )
            })
    }
}

/// The source index of each padded position `-before .. n + after` of an axis
/// of length `n` (periodic or neumann).
fn source_indices(n: usize, before: usize, after: usize, mode: BoundaryMode) -> Vec<i64> {
    let n = n as i64;
    (-(before as i64)..n + after as i64)
        .map(|i| match mode {
            BoundaryMode::Neumann if n > 1 => {
                let period = 2 * (n - 1);
                let j = i.rem_euclid(period);
                if j >= n { period - j } else { j }
            }
            BoundaryMode::Neumann => 0,
            _ => i.rem_euclid(n),
        })
        .collect()
}

/// Pads the last `pads.len()` axes of `x` by `(before, after)` each, as the
/// boundary condition `mode` says.
///
/// # Panics
/// With the error of [`try_pad`].
pub fn pad<const R: usize>(x: Tensor<R>, pads: &[(usize, usize)], mode: BoundaryMode) -> Tensor<R> {
    idx_flow_core::or_panic(try_pad(x, pads, mode))
}

/// [`pad`], with an error when `pads` has more entries than `x` has axes, or
/// when an axis to pad periodically or by mirroring is empty (there is
/// nothing to wrap or mirror).
pub fn try_pad<const R: usize>(
    x: Tensor<R>,
    pads: &[(usize, usize)],
    mode: BoundaryMode,
) -> Result<Tensor<R>> {
    if pads.len() > R {
        return Err(Error::Shape {
            context: "pad".into(),
            expected: format!("at most {R} (before, after) pairs for a rank-{R} tensor"),
            got: format!("{} pairs", pads.len()),
        });
    }
    let first = R - pads.len();
    let dims = x.dims();
    for (i, &(before, after)) in pads.iter().enumerate() {
        if (before, after) != (0, 0) && mode != BoundaryMode::Dirichlet && dims[first + i] == 0 {
            return Err(Error::Shape {
                context: format!("pad ({})", mode.as_str()),
                expected: format!("a non-empty axis {} to pad", first + i),
                got: format!("{dims:?}"),
            });
        }
    }
    let mut x = x;
    for (i, &(before, after)) in pads.iter().enumerate() {
        if before == 0 && after == 0 {
            continue;
        }
        let axis = first + i;
        let dims = x.dims();
        let n = dims[axis];
        x = match mode {
            BoundaryMode::Dirichlet => {
                let device = x.device();
                let mut parts = Vec::with_capacity(3);
                let zeros = |len: usize| {
                    let mut d = dims;
                    d[axis] = len;
                    Tensor::<R>::zeros(d, &device)
                };
                if before > 0 {
                    parts.push(zeros(before));
                }
                parts.push(x);
                if after > 0 {
                    parts.push(zeros(after));
                }
                Tensor::cat(parts, axis)
            }
            // Pads no wider than the axis are slices of it (flipped for a
            // mirror): a cat, whose backward is a few slices, where a
            // `select` would scatter-add its gradient one index at a time.
            BoundaryMode::Periodic if before <= n && after <= n => {
                let mut parts = Vec::with_capacity(3);
                if before > 0 {
                    parts.push(x.clone().narrow(axis, n - before, before));
                }
                parts.push(x.clone());
                if after > 0 {
                    parts.push(x.narrow(axis, 0, after));
                }
                Tensor::cat(parts, axis)
            }
            BoundaryMode::Neumann if n > 1 && before < n && after < n => {
                let mut parts = Vec::with_capacity(3);
                if before > 0 {
                    parts.push(x.clone().narrow(axis, 1, before).flip([axis as isize]));
                }
                parts.push(x.clone());
                if after > 0 {
                    parts.push(x.narrow(axis, n - 1 - after, after).flip([axis as isize]));
                }
                Tensor::cat(parts, axis)
            }
            _ => {
                let idx = source_indices(n, before, after, mode);
                let len = idx.len();
                let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [len]), &x.device());
                x.select(axis, idx)
            }
        };
    }
    Ok(x)
}

/// Pads (positive entries) or crops (negative entries) the last
/// `pads.len()` axes: the crop of pdequinox's transposed convolution, whose
/// post-dilation padding may be negative.
pub(crate) fn pad_or_crop<const R: usize>(
    x: Tensor<R>,
    pads: &[(i64, i64)],
    mode: BoundaryMode,
) -> Tensor<R> {
    let first = R - pads.len();
    let mut x = x;
    // Crops first (they never need the padded values), then pads.
    for (i, &(l, r)) in pads.iter().enumerate() {
        let axis = first + i;
        let n = x.dims()[axis] as i64;
        let cl = (-l).max(0);
        let cr = (-r).max(0);
        if cl > 0 || cr > 0 {
            x = x.narrow(axis, cl as usize, (n - cl - cr).max(0) as usize);
        }
    }
    let positive: Vec<(usize, usize)> = pads
        .iter()
        .map(|&(l, r)| (l.max(0) as usize, r.max(0) as usize))
        .collect();
    pad(x, &positive, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_numpy() {
        // np.pad(arange(3), 4, 'wrap') and 'reflect'.
        assert_eq!(
            source_indices(3, 4, 4, BoundaryMode::Periodic),
            [2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        );
        assert_eq!(
            source_indices(3, 4, 4, BoundaryMode::Neumann),
            [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]
        );
        assert_eq!(source_indices(1, 2, 1, BoundaryMode::Neumann), [0, 0, 0, 0]);
    }

    /// The slice-and-cat pads equal the index pads (values and gradients)
    /// for every width up to and past the axis, on both padded axes.
    #[test]
    fn sliced_pads_equal_index_pads() {
        let device = burn::tensor::Device::default().autodiff();
        for mode in [BoundaryMode::Periodic, BoundaryMode::Neumann] {
            for n in 1..5usize {
                for (before, after) in [(0, 1), (1, 0), (1, 2), (2, 2), (3, 4), (5, 0)] {
                    let values: Vec<f32> = (0..2 * n * 3).map(|v| v as f32 * 0.5 - 1.0).collect();
                    let x = Tensor::<3>::from_data(TensorData::new(values, [2, n, 3]), &device)
                        .require_grad();
                    let padded = pad(x.clone(), &[(before, after), (1, 1)], mode);
                    let mut want = x.clone();
                    for (axis, (b, a)) in [(1, (before, after)), (2, (1, 1))] {
                        let len = want.dims()[axis];
                        let idx = source_indices(len, b, a, mode);
                        let k = idx.len();
                        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [k]), &device);
                        want = want.select(axis, idx);
                    }
                    let label = format!("{mode:?} n {n} pads ({before}, {after})");
                    assert_eq!(padded.dims(), want.dims(), "{label}");
                    let weights = Tensor::<3>::from_data(
                        TensorData::new(
                            (0..padded.dims().iter().product::<usize>())
                                .map(|v| (v % 7) as f32)
                                .collect::<Vec<f32>>(),
                            padded.dims(),
                        ),
                        &device,
                    );
                    let (got, ref_) = (padded.clone().into_data(), want.clone().into_data());
                    assert_eq!(got, ref_, "{label}: values");
                    let g1 = (padded * weights.clone()).sum().backward();
                    let g2 = (want * weights).sum().backward();
                    assert_eq!(
                        x.grad(&g1).unwrap().into_data(),
                        x.grad(&g2).unwrap().into_data(),
                        "{label}: gradients"
                    );
                }
            }
        }
    }

    #[test]
    fn modes_parse_in_any_case() {
        assert_eq!(
            "Periodic".parse::<BoundaryMode>().unwrap(),
            BoundaryMode::Periodic
        );
        let e = "robin".parse::<BoundaryMode>().unwrap_err().to_string();
        assert!(e.contains("robin") && e.contains("neumann"), "{e}");
    }
}
