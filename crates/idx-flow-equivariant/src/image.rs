//! Geometric images: [`TensorKey`] (tensor order and parity) and
//! [`MultiImage`] (blocks of one or more keys on one grid), with conversions
//! from and to ginjax's pixel layout.
//!
//! A block of key `(k, p)` holds, at every cell of a `D`-dimensional grid, a
//! tensor of order `k` (`D^k` components) that picks up `det(g)^p` under a
//! group element `g`. Here it is a burn tensor `[B, C·D^k, *N]`: batch, then
//! channels and components on one axis (channel-major, the components of a
//! channel in row-major order of their `k` indices), then the `D` spatial
//! axes. This layout turns the equivariant convolution into one burn
//! convolution whose input channels are `(channel, component)` pairs.
//!
//! ginjax stores a block `(C, *N, *(D,)*k)`, components last;
//! [`from_pixel_layout`] and [`to_pixel_layout`] convert.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_equivariant::{MultiImage, TensorKey};
//!
//! let device = Device::default();
//! // Two scalar channels and one vector channel on an 8×8 torus, batch of 4.
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::zeros([4, 2, 8, 8], &device))?
//!     .with(TensorKey::VECTOR, Tensor::zeros([4, 2, 8, 8], &device))?;
//! assert_eq!(x.channels(TensorKey::VECTOR), Some(1));
//! assert_eq!(x.spatial_dims(), Some(vec![8, 8]));
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The type of a block: tensor order `k` and parity `p` (0 for tensors, 1 for
/// pseudotensors, which also flip sign under reflections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TensorKey {
    /// Tensor order `k` (0 scalar, 1 vector, 2 matrix, ...).
    pub k: usize,
    /// Parity `p`, 0 or 1.
    pub parity: usize,
}

impl TensorKey {
    /// Scalars `(0, 0)`.
    pub const SCALAR: TensorKey = TensorKey { k: 0, parity: 0 };
    /// Pseudoscalars `(0, 1)`.
    pub const PSEUDOSCALAR: TensorKey = TensorKey { k: 0, parity: 1 };
    /// Vectors `(1, 0)`.
    pub const VECTOR: TensorKey = TensorKey { k: 1, parity: 0 };
    /// Pseudovectors `(1, 1)`.
    pub const PSEUDOVECTOR: TensorKey = TensorKey { k: 1, parity: 1 };

    /// The key of order `k` and parity `parity % 2`.
    pub const fn new(k: usize, parity: usize) -> Self {
        TensorKey {
            k,
            parity: parity % 2,
        }
    }

    /// Components per cell in `d` dimensions: `d^k`.
    pub fn components(self, d: usize) -> usize {
        d.pow(self.k as u32)
    }

    /// The key of the tensor product of `self` and `other` (orders add, parities add mod 2).
    pub fn product(self, other: TensorKey) -> TensorKey {
        TensorKey::new(self.k + other.k, self.parity + other.parity)
    }
}

impl fmt::Display for TensorKey {
    /// ginjax's fixture name: `k{k}p{p}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}p{}", self.k, self.parity)
    }
}

impl FromStr for TensorKey {
    type Err = Error;

    /// Parses `k{k}p{p}` (e.g. `k1p0`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::arg("tensor key", format!("got {s:?}, expected k<order>p<0|1>"));
        let rest = s.strip_prefix('k').ok_or_else(bad)?;
        let (k, p) = rest.split_once('p').ok_or_else(bad)?;
        let k: usize = k.parse().map_err(|_| bad())?;
        let p: usize = p.parse().map_err(|_| bad())?;
        if p > 1 {
            return Err(bad());
        }
        Ok(TensorKey::new(k, p))
    }
}

/// Input or output types of a layer: channels per key.
pub type Signature = Vec<(TensorKey, usize)>;

/// Checks a signature (non-empty, no repeated key, no zero channels) and
/// returns it as a map.
pub(crate) fn check_signature(
    name: &'static str,
    sig: &[(TensorKey, usize)],
) -> Result<BTreeMap<TensorKey, usize>> {
    let mut map = BTreeMap::new();
    if sig.is_empty() {
        return Err(Error::arg(name, "got no keys, expected at least one"));
    }
    for &(key, c) in sig {
        if key.parity > 1 {
            return Err(Error::arg(
                name,
                format!("key {key:?}: parity must be 0 or 1"),
            ));
        }
        if c == 0 {
            return Err(Error::arg(name, format!("key {key}: got 0 channels")));
        }
        if map.insert(key, c).is_some() {
            return Err(Error::arg(name, format!("key {key} appears twice")));
        }
    }
    Ok(map)
}

/// Checks the number of spatial dimensions (2 or 3: the hyperoctahedral
/// groups and filter bases are defined there).
pub(crate) fn check_d(d: usize) -> Result<()> {
    if d == 2 || d == 3 {
        Ok(())
    } else {
        Err(Error::arg(
            "spatial dimensions",
            format!("got {d}, expected 2 or 3"),
        ))
    }
}

/// Blocks of geometric images of several [`TensorKey`]s on one grid, each
/// `[B, C·D^k, *N]` (see the [module docs](self)), with `D = R − 2` spatial
/// axes that are each either a torus (periodic) or zero-padded.
#[derive(Clone, Debug)]
pub struct MultiImage<const R: usize> {
    blocks: BTreeMap<TensorKey, Tensor<R>>,
    is_torus: Vec<bool>,
}

impl<const R: usize> MultiImage<R> {
    /// An empty multi-image whose axes are periodic where `is_torus` says so
    /// (one flag per spatial axis, `R − 2` of them, 2 or 3).
    pub fn new(is_torus: Vec<bool>) -> Result<Self> {
        check_d(R.saturating_sub(2))?;
        if is_torus.len() != R - 2 {
            return Err(Error::arg(
                "is_torus",
                format!(
                    "got {} flags, expected {} (one per spatial axis of a rank {R} block)",
                    is_torus.len(),
                    R - 2
                ),
            ));
        }
        Ok(MultiImage {
            blocks: BTreeMap::new(),
            is_torus,
        })
    }

    /// An empty multi-image with the same axes as `self`.
    pub fn empty_like(&self) -> Self {
        MultiImage {
            blocks: BTreeMap::new(),
            is_torus: self.is_torus.clone(),
        }
    }

    /// Spatial dimensions `D = R − 2`.
    pub fn d(&self) -> usize {
        R - 2
    }

    /// Which spatial axes are periodic.
    pub fn is_torus(&self) -> &[bool] {
        &self.is_torus
    }

    /// Adds (or replaces) the block of `key`: `[B, C·D^k, *N]`. An error when
    /// the channel axis is not a multiple of `D^k`, or batch or grid differ
    /// from the other blocks'.
    pub fn insert(&mut self, key: TensorKey, block: Tensor<R>) -> Result<()> {
        let dims = block.dims();
        let d = R - 2;
        let comps = key.components(d);
        let shape_err = |expected: String| Error::Shape {
            context: format!("MultiImage block {key}"),
            expected,
            got: format!("{dims:?}"),
        };
        if key.parity > 1 {
            return Err(Error::arg(
                "tensor key",
                format!("{key:?}: parity must be 0 or 1"),
            ));
        }
        if dims[1] == 0 || !dims[1].is_multiple_of(comps) || dims[2..].contains(&0) {
            return Err(shape_err(format!(
                "[B, C·{comps}, *N] with C ≥ 1 and non-empty axes"
            )));
        }
        if let Some(other) = self
            .blocks
            .iter()
            .find(|(k, _)| **k != key)
            .map(|(_, t)| t.dims())
            && (other[0] != dims[0] || other[2..] != dims[2..])
        {
            return Err(shape_err(format!(
                "batch {} and grid {:?} like the other blocks",
                other[0],
                &other[2..]
            )));
        }
        self.blocks.insert(key, block);
        Ok(())
    }

    /// [`insert`](Self::insert), by value.
    pub fn with(mut self, key: TensorKey, block: Tensor<R>) -> Result<Self> {
        self.insert(key, block)?;
        Ok(self)
    }

    /// Adds the block of `key` from ginjax's pixel layout: `values` row-major
    /// of `shape = [B, C, *N, *(D,)*k]`.
    pub fn insert_pixel_layout(
        &mut self,
        key: TensorKey,
        values: &[f32],
        shape: &[usize],
        device: &Device,
    ) -> Result<()> {
        let d = R - 2;
        if shape.len() != 2 + d + key.k {
            return Err(Error::Shape {
                context: format!("pixel-layout block {key}"),
                expected: format!("[B, C, *N ({d} axes), *(D,)*{}]", key.k),
                got: format!("{shape:?}"),
            });
        }
        let v = from_pixel_layout(values, shape, d, key.k)?;
        let comps = key.components(d);
        let mut dims = [0usize; R];
        dims[0] = shape[0];
        dims[1] = shape[1] * comps;
        dims[2..].copy_from_slice(&shape[2..2 + d]);
        self.insert(key, Tensor::from_data(TensorData::new(v, dims), device))
    }

    /// The block of `key` in ginjax's pixel layout: values and shape
    /// `[B, C, *N, *(D,)*k]`.
    pub fn pixel_layout(&self, key: TensorKey) -> Option<(Vec<f32>, Vec<usize>)> {
        let t = self.blocks.get(&key)?;
        let dims = t.dims();
        let d = R - 2;
        let comps = key.components(d);
        let values: Vec<f32> = t
            .clone()
            .into_data()
            .convert::<f32>()
            .iter::<f32>()
            .collect();
        let mut shape = vec![dims[0], dims[1] / comps];
        shape.extend_from_slice(&dims[2..]);
        shape.extend(std::iter::repeat_n(d, key.k));
        let v = to_pixel_layout(&values, &shape, d, key.k).ok()?;
        Some((v, shape))
    }

    /// The block of `key`.
    pub fn get(&self, key: TensorKey) -> Option<&Tensor<R>> {
        self.blocks.get(&key)
    }

    /// Removes and returns the block of `key`.
    pub fn remove(&mut self, key: TensorKey) -> Option<Tensor<R>> {
        self.blocks.remove(&key)
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<TensorKey> {
        self.blocks.keys().copied().collect()
    }

    /// The blocks, by key.
    pub fn iter(&self) -> impl Iterator<Item = (TensorKey, &Tensor<R>)> {
        self.blocks.iter().map(|(k, t)| (*k, t))
    }

    /// The blocks, by value.
    pub fn into_blocks(self) -> BTreeMap<TensorKey, Tensor<R>> {
        self.blocks
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether there is no block.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Channels `C` of the block of `key`.
    pub fn channels(&self, key: TensorKey) -> Option<usize> {
        self.blocks
            .get(&key)
            .map(|t| t.dims()[1] / key.components(R - 2))
    }

    /// Channels per key.
    pub fn signature(&self) -> Signature {
        self.blocks
            .iter()
            .map(|(k, t)| (*k, t.dims()[1] / k.components(R - 2)))
            .collect()
    }

    /// The batch size (None when empty).
    pub fn batch(&self) -> Option<usize> {
        self.blocks.values().next().map(|t| t.dims()[0])
    }

    /// The grid `N` (None when empty).
    pub fn spatial_dims(&self) -> Option<Vec<usize>> {
        self.blocks.values().next().map(|t| t.dims()[2..].to_vec())
    }

    /// The device of the blocks (None when empty).
    pub fn device(&self) -> Option<Device> {
        self.blocks.values().next().map(|t| t.device())
    }

    /// The same blocks with `f` applied to each (`f` gets the key).
    pub fn try_map(
        self,
        mut f: impl FnMut(TensorKey, Tensor<R>) -> Result<Tensor<R>>,
    ) -> Result<Self> {
        let mut out = MultiImage {
            blocks: BTreeMap::new(),
            is_torus: self.is_torus,
        };
        for (k, t) in self.blocks {
            out.insert(k, f(k, t)?)?;
        }
        Ok(out)
    }

    /// Blocks of both, channels of `other` after those of `self` where a key
    /// is in both (ginjax's `concat`).
    pub fn concat(mut self, other: MultiImage<R>) -> Result<Self> {
        for (k, t) in other.blocks {
            let t = match self.blocks.remove(&k) {
                Some(mine) => {
                    let (a, b) = (mine.dims(), t.dims());
                    if a[0] != b[0] || a[2..] != b[2..] {
                        return Err(Error::Shape {
                            context: format!("MultiImage::concat block {k}"),
                            expected: format!("batch and grid of {a:?}"),
                            got: format!("{b:?}"),
                        });
                    }
                    Tensor::cat(vec![mine, t], 1)
                }
                None => t,
            };
            self.insert(k, t)?;
        }
        Ok(self)
    }

    /// Blockwise sum of two multi-images of the same signature and grid.
    pub fn try_add(self, other: MultiImage<R>) -> Result<Self> {
        if self.signature() != other.signature() {
            return Err(Error::Shape {
                context: "MultiImage::add".into(),
                expected: format!("{:?}", self.signature()),
                got: format!("{:?}", other.signature()),
            });
        }
        let mut other = other.blocks;
        self.try_map(|k, t| {
            let o = other
                .remove(&k)
                .ok_or_else(|| Error::arg("MultiImage::add", "missing key"))?;
            if o.dims() != t.dims() {
                return Err(Error::Shape {
                    context: format!("MultiImage::add block {k}"),
                    expected: format!("{:?}", t.dims()),
                    got: format!("{:?}", o.dims()),
                });
            }
            Ok(t + o)
        })
    }
}

/// ginjax's pixel layout `[L, C, *N, *(D,)*k]` (row-major `values`, `shape`
/// as written) to this module's `[L, C, D^k, *N]` (= `[L, C·D^k, *N]`).
pub fn from_pixel_layout(values: &[f32], shape: &[usize], d: usize, k: usize) -> Result<Vec<f32>> {
    let (lc, cells, comps) = layout_sizes(values, shape, d, k)?;
    let mut out = vec![0f32; values.len()];
    for a in 0..lc {
        for x in 0..cells {
            for j in 0..comps {
                out[(a * comps + j) * cells + x] = values[(a * cells + x) * comps + j];
            }
        }
    }
    Ok(out)
}

/// The inverse of [`from_pixel_layout`]: `values` in this module's layout,
/// `shape` the pixel layout `[L, C, *N, *(D,)*k]` to produce.
pub fn to_pixel_layout(values: &[f32], shape: &[usize], d: usize, k: usize) -> Result<Vec<f32>> {
    let (lc, cells, comps) = layout_sizes(values, shape, d, k)?;
    let mut out = vec![0f32; values.len()];
    for a in 0..lc {
        for x in 0..cells {
            for j in 0..comps {
                out[(a * cells + x) * comps + j] = values[(a * comps + j) * cells + x];
            }
        }
    }
    Ok(out)
}

/// `(L·C, cells, components)` of a pixel-layout shape, checked against `values`.
fn layout_sizes(
    values: &[f32],
    shape: &[usize],
    d: usize,
    k: usize,
) -> Result<(usize, usize, usize)> {
    let bad = |what: String| Error::Shape {
        context: "pixel layout".into(),
        expected: what,
        got: format!("{shape:?} with {} values", values.len()),
    };
    if shape.len() != 2 + d + k || shape[2 + d..].iter().any(|&n| n != d) {
        return Err(bad(format!("[L, C, *N ({d} axes), *({d},)*{k}]")));
    }
    let lc = shape[0] * shape[1];
    let cells: usize = shape[2..2 + d].iter().product();
    let comps = d.pow(k as u32);
    if lc * cells * comps != values.len() {
        return Err(bad(format!("{} values", lc * cells * comps)));
    }
    Ok((lc, cells, comps))
}
