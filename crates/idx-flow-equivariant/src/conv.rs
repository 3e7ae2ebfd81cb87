//! [`ConvContract`]: ginjax's equivariant convolution. For every pair of an
//! input key `(k, p)` and an output key `(k', p')`, the filter is a learned
//! combination of the invariant filters of key `(k + k', p + p' mod 2)`,
//!
//! `F[o, c] = Σ_f w[o, c, f] · F_f`,
//!
//! the input is cross-correlated with it (no kernel flip) and its `k` tensor
//! axes are contracted with the first `k` axes of the filter, which leaves a
//! `k'`-tensor; the contributions of all input keys are summed. Because the
//! filters are invariant, the layer commutes with every element of `B_D`.
//!
//! Padding follows the grid: on a torus axis the input is wrapped by
//! `(M − 1)/2 · dilation` cells, on other axes zero-padded as much ("same").
//! `input_dilation` inserts zeros between input cells before the
//! convolution (JAX's `lhs_dilation`), which makes the layer a transposed
//! convolution: with an even filter (`M = 2`), explicit padding 1 and input
//! dilation 2 it doubles the grid, as ginjax's UNet upsamples.
//!
//! Biases ([`BiasMode`]): a plain bias `+ b[c]` commutes with the group only
//! on scalars; on other keys the bias scales the spatial mean of the
//! convolution's output, `+ mean_x(y[c]) · b[c]` (per channel and component).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_equivariant::{ConvContractConfig, MultiImage, TensorKey};
//!
//! let device = Device::default();
//! // Scalars and vectors in, vectors out, on a 16×16 torus.
//! let conv = ConvContractConfig::new(
//!     2,
//!     vec![(TensorKey::SCALAR, 2), (TensorKey::VECTOR, 1)],
//!     vec![(TensorKey::VECTOR, 4)],
//! )
//! .init(&device)?;
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::random([3, 2, 16, 16], Distribution::Default, &device))?
//!     .with(TensorKey::VECTOR, Tensor::random([3, 2, 16, 16], Distribution::Default, &device))?;
//! let y = conv.try_forward(x)?;
//! assert_eq!(y.get(TensorKey::VECTOR).unwrap().dims(), [3, 8, 16, 16]);
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use std::collections::BTreeMap;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, conv3d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use serde::{Deserialize, Serialize};

use super::filters::invariant_filters;
use super::image::{MultiImage, TensorKey, check_d, check_signature};
use crate::{Error, Result};
use idx_flow_core::init::draw;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_pde::{BoundaryMode, pad};

/// How [`ConvContract`] adds biases (ginjax's `use_bias`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BiasMode {
    /// No bias.
    None,
    /// A plain bias on scalars `(0, 0)`, a mean-scaled bias on every other key.
    Auto,
    /// A mean-scaled bias on every key, scalars included.
    Mean,
    /// A plain bias on scalars; the other keys get none. (ginjax drops the
    /// non-scalar outputs altogether in this mode; here they are kept, unbiased.)
    Scalar,
}

/// Padding of [`ConvContract`] (ginjax's `padding`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Padding {
    /// Wrap torus axes and zero-pad the others by `(M − 1)/2 · dilation`
    /// cells (ginjax's default, `None`: `'TORUS'`, or `'SAME'` without torus axes).
    Auto,
    /// Zero-pad every axis by `(M − 1)/2 · dilation` cells.
    Same,
    /// No padding.
    Valid,
    /// Zero-pad each axis by `(before, after)` cells (one pair, or one per axis),
    /// after the input dilation.
    Explicit(Vec<(usize, usize)>),
}

/// Configuration of a [`ConvContract`].
#[derive(Config, Debug)]
pub struct ConvContractConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Input keys and their channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Output keys and their channels.
    pub target_keys: Vec<(TensorKey, usize)>,
    /// Filter side `M`. Default: 3.
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Bias mode. Default: [`BiasMode::Auto`].
    #[config(default = "BiasMode::Auto")]
    pub bias: BiasMode,
    /// Stride per axis (one value or `D`). Default: 1.
    #[config(default = "vec![1]")]
    pub stride: Vec<usize>,
    /// Filter dilation per axis (JAX's `rhs_dilation`). Default: 1.
    #[config(default = "vec![1]")]
    pub dilation: Vec<usize>,
    /// Input dilation per axis (JAX's `lhs_dilation`; > 1 for transposed use). Default: 1.
    #[config(default = "vec![1]")]
    pub input_dilation: Vec<usize>,
    /// Padding. Default: [`Padding::Auto`].
    #[config(default = "Padding::Auto")]
    pub padding: Padding,
}

/// ginjax's `ConvContract` (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct ConvContract {
    /// `[C_out, C_in, n_filters]` per (input key, output key) pair with filters
    /// (`weights.{in}.{out}`), in the order of [`pairs`](Self::pairs).
    pub weights: Vec<Param<Tensor<3>>>,
    /// `[C_out]` per biased output key (`bias.{out}`), in the order of [`bias_keys`](Self::bias_keys).
    pub biases: Vec<Param<Tensor<1>>>,
    /// The invariant filters of each pair, `[n_filters, M^D · D^k · D^k']` (constant).
    filters: Vec<Tensor<2>>,
    #[module(skip)]
    pairs: Vec<(TensorKey, TensorKey)>,
    #[module(skip)]
    bias_keys: Vec<TensorKey>,
    #[module(skip)]
    input_keys: Vec<(TensorKey, usize)>,
    #[module(skip)]
    target_keys: Vec<(TensorKey, usize)>,
    #[module(skip)]
    bias_mode: BiasMode,
    #[module(skip)]
    geometry: ConvGeometry,
}

/// Sizes of the convolution.
#[derive(Clone, Debug)]
struct ConvGeometry {
    d: usize,
    kernel: usize,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    input_dilation: Vec<usize>,
    padding: Padding,
}

/// One value for every axis, or one per axis; each at least 1.
fn per_axis(name: &'static str, v: &[usize], d: usize) -> Result<Vec<usize>> {
    idx_flow_pde::per_axis(name, v, d, 1)
}

impl ConvContractConfig {
    /// Builds the layer with ginjax's initialisation: `w ~ U(±1/√(C_in·M^D·D^k))`
    /// for input key `(k, p)`, biases likewise (the bound of the output key's
    /// last input key). An error for bad sizes, an even filter with
    /// "same"-type padding, or explicit padding of the wrong length.
    pub fn init(&self, device: &Device) -> Result<ConvContract> {
        let d = self.d;
        check_d(d)?;
        let inputs = check_signature("input_keys", &self.input_keys)?;
        let targets = check_signature("target_keys", &self.target_keys)?;
        let m = self.kernel_size;
        if m == 0 {
            return Err(Error::arg("kernel_size", "got 0, expected at least 1"));
        }
        let padding = match &self.padding {
            Padding::Explicit(p) => match p.len() {
                1 => Padding::Explicit(vec![p[0]; d]),
                n if n == d => Padding::Explicit(p.clone()),
                n => {
                    return Err(Error::arg(
                        "padding",
                        format!("got {n} pairs, expected 1 or {d}"),
                    ));
                }
            },
            p if m.is_multiple_of(2) => {
                return Err(Error::arg(
                    "padding",
                    format!("{p:?} needs an odd kernel_size, got {m}; give explicit padding"),
                ));
            }
            p => p.clone(),
        };
        let geometry = ConvGeometry {
            d,
            kernel: m,
            stride: per_axis("stride", &self.stride, d)?,
            dilation: per_axis("dilation", &self.dilation, d)?,
            input_dilation: per_axis("input_dilation", &self.input_dilation, d)?,
            padding,
        };
        let mut cache: BTreeMap<TensorKey, Tensor<2>> = BTreeMap::new();
        let (mut weights, mut filters, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
        let mut bias_bound: BTreeMap<TensorKey, f64> = BTreeMap::new();
        for (&kin, &cin) in &inputs {
            let bound = 1.0 / ((cin * m.pow(d as u32) * kin.components(d)) as f64).sqrt();
            for (&kout, &cout) in &targets {
                bias_bound.insert(kout, bound);
                let fkey = kin.product(kout);
                let f = match cache.get(&fkey) {
                    Some(f) => f.clone(),
                    None => {
                        let basis = invariant_filters(m, fkey, d)?;
                        if basis.is_empty() {
                            continue;
                        }
                        let f = basis.to_matrix(device);
                        cache.insert(fkey, f.clone());
                        f
                    }
                };
                let n = f.dims()[0];
                weights.push(Param::from_tensor(draw(
                    [cout, cin, n],
                    Distribution::Uniform(-bound, bound),
                    device,
                )));
                filters.push(f);
                pairs.push((kin, kout));
            }
        }
        let bias_keys: Vec<TensorKey> = targets
            .keys()
            .copied()
            .filter(|k| match self.bias {
                BiasMode::None => false,
                BiasMode::Scalar => *k == TensorKey::SCALAR,
                BiasMode::Auto | BiasMode::Mean => true,
            })
            .collect();
        let biases = bias_keys
            .iter()
            .map(|k| {
                let b = bias_bound[k];
                Param::from_tensor(draw([targets[k]], Distribution::Uniform(-b, b), device))
            })
            .collect();
        Ok(ConvContract {
            weights,
            biases,
            filters,
            pairs,
            bias_keys,
            input_keys: inputs.into_iter().collect(),
            target_keys: targets.into_iter().collect(),
            bias_mode: self.bias,
            geometry,
        })
    }
}

impl ConvContract {
    /// The (input key, output key) pairs that have filters, in the order of
    /// [`weights`](Self::weights). A pair without invariant filters (e.g. a
    /// scalar to a pseudoscalar with `M = 3` in 2-D) contributes nothing.
    pub fn pairs(&self) -> &[(TensorKey, TensorKey)] {
        &self.pairs
    }

    /// The output keys with a bias, in the order of [`biases`](Self::biases).
    pub fn bias_keys(&self) -> &[TensorKey] {
        &self.bias_keys
    }

    /// Input keys and channels.
    pub fn input_keys(&self) -> &[(TensorKey, usize)] {
        &self.input_keys
    }

    /// Output keys and channels.
    pub fn target_keys(&self) -> &[(TensorKey, usize)] {
        &self.target_keys
    }

    /// The bias mode.
    pub fn bias_mode(&self) -> BiasMode {
        self.bias_mode
    }

    /// The dense filter `[Σ C_out·D^k', Σ C_in·D^k, *(M,)*D]` of the whole layer.
    fn weight<const R: usize>(&self, device: &Device) -> Tensor<R> {
        let g = &self.geometry;
        let (d, cells) = (g.d, g.kernel.pow(g.d as u32));
        let mut rows = Vec::with_capacity(self.target_keys.len());
        for &(kout, cout) in &self.target_keys {
            let ko = kout.components(d);
            let mut cols = Vec::with_capacity(self.input_keys.len());
            for &(kin, cin) in &self.input_keys {
                let ki = kin.components(d);
                let at = self.pairs.iter().position(|p| *p == (kin, kout));
                cols.push(match at {
                    Some(i) => {
                        let w = self.weights[i].val();
                        let n = w.dims()[2];
                        // w[o, c, f] · F_f[t, i, j] → [o, j, c, i, t]
                        let f = w.reshape([cout * cin, n]).matmul(self.filters[i].clone());
                        f.reshape([cout, cin, cells, ki, ko])
                            .permute([0, 4, 1, 3, 2])
                            .reshape([cout * ko, cin * ki, cells])
                    }
                    None => Tensor::zeros([cout * ko, cin * ki, cells], device),
                });
            }
            rows.push(Tensor::cat(cols, 1));
        }
        let w: Tensor<3> = Tensor::cat(rows, 0);
        let [o, c, _] = w.dims();
        let mut shape = [g.kernel; R];
        shape[0] = o;
        shape[1] = c;
        w.reshape(shape)
    }

    /// The input blocks `[B, Σ C·D^k, *N]`, checked against the input keys.
    fn gather_input<const R: usize>(&self, x: &MultiImage<R>) -> Result<Tensor<R>> {
        let sig = x.signature();
        if R != self.geometry.d + 2 || sig != self.input_keys {
            return Err(Error::Shape {
                context: "ConvContract input".into(),
                expected: format!(
                    "rank {} blocks of {}",
                    self.geometry.d + 2,
                    describe(&self.input_keys)
                ),
                got: format!("rank {R} blocks of {}", describe(&sig)),
            });
        }
        Ok(Tensor::cat(
            self.input_keys
                .iter()
                .filter_map(|(k, _)| x.get(*k).cloned())
                .collect(),
            1,
        ))
    }

    /// `x` with keys and channels of the input keys, blocks `[B, C·D^k, *N]`
    /// → blocks of the output keys `[B, C'·D^k', *N']`, `N'` the "same" size
    /// `ceil(N/stride)` by default. An error for other keys or channels, a
    /// wrong rank, or a grid too small for the filter.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let g = &self.geometry;
        let input = self.gather_input(&x)?;
        let device = input.device();
        let half: Vec<usize> = g.dilation.iter().map(|&r| (g.kernel - 1) / 2 * r).collect();
        let d = g.d;
        // Torus axes are wrapped before the input dilation (JAX's order).
        let mut input = input;
        let mut zero_pads = vec![(0usize, 0usize); d];
        match &g.padding {
            Padding::Auto => {
                let wrap: Vec<(usize, usize)> = (0..d)
                    .map(|a| {
                        if x.is_torus()[a] {
                            (half[a], half[a])
                        } else {
                            (0, 0)
                        }
                    })
                    .collect();
                if wrap.iter().any(|&(a, b)| a + b > 0) {
                    input = pad(input, &wrap, BoundaryMode::Periodic);
                }
                for a in 0..d {
                    if !x.is_torus()[a] {
                        zero_pads[a] = (half[a], half[a]);
                    }
                }
            }
            Padding::Same => zero_pads = half.iter().map(|&h| (h, h)).collect(),
            Padding::Valid => {}
            Padding::Explicit(p) => zero_pads = p.clone(),
        }
        let input = dilate(input, &g.input_dilation);
        let input = if zero_pads.iter().any(|&(a, b)| a + b > 0) {
            pad(input, &zero_pads, BoundaryMode::Dirichlet)
        } else {
            input
        };
        let dims = input.dims();
        for a in 0..d {
            let span = (g.kernel - 1) * g.dilation[a] + 1;
            if dims[2 + a] < span {
                return Err(Error::Shape {
                    context: "ConvContract input".into(),
                    expected: format!(
                        "a padded grid of at least {span} cells on axis {a} for the {}-cell filter",
                        g.kernel
                    ),
                    got: format!("{:?}", &dims[2..]),
                });
            }
        }
        let weight: Tensor<R> = self.weight(&device);
        let y: Tensor<R> = match R {
            4 => {
                let o = ConvOptions::new(
                    [g.stride[0], g.stride[1]],
                    [0, 0],
                    [g.dilation[0], g.dilation[1]],
                    1,
                );
                let y = conv2d(
                    input.reshape(arr::<4>(&dims)),
                    weight.reshape(arr::<4>(&weight_dims(
                        &self.geometry,
                        &dims,
                        &self.target_keys,
                    ))),
                    None,
                    o,
                );
                let yd = y.dims();
                y.reshape(arr::<R>(&yd))
            }
            _ => {
                let o = ConvOptions::new(
                    [g.stride[0], g.stride[1], g.stride[2]],
                    [0, 0, 0],
                    [g.dilation[0], g.dilation[1], g.dilation[2]],
                    1,
                );
                let y = conv3d(
                    input.reshape(arr::<5>(&dims)),
                    weight.reshape(arr::<5>(&weight_dims(
                        &self.geometry,
                        &dims,
                        &self.target_keys,
                    ))),
                    None,
                    o,
                );
                let yd = y.dims();
                y.reshape(arr::<R>(&yd))
            }
        };
        let mut out = x.empty_like();
        let mut start = 0;
        for &(kout, cout) in &self.target_keys {
            let width = cout * kout.components(d);
            let block = y.clone().narrow(1, start, width);
            start += width;
            let block = match self.bias_keys.iter().position(|k| *k == kout) {
                Some(i) => self.add_bias(kout, block, self.biases[i].val()),
                None => block,
            };
            out.insert(kout, block)?;
        }
        Ok(out)
    }

    fn add_bias<const R: usize>(&self, key: TensorKey, y: Tensor<R>, b: Tensor<1>) -> Tensor<R> {
        let dims = y.dims();
        let c = b.dims()[0];
        let comps = key.components(self.geometry.d);
        let cells: usize = dims[2..].iter().product();
        let plain = key == TensorKey::SCALAR && self.bias_mode != BiasMode::Mean;
        let y3: Tensor<4> = y.reshape([dims[0], c, comps, cells]);
        let b = b.reshape([1, c, 1, 1]);
        let out = if plain {
            y3 + b
        } else {
            let mean = y3.clone().mean_dim(3);
            y3 + mean * b
        };
        out.reshape(dims)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

/// `[Σ C_out·D^k', Σ C_in·D^k, *(M,)*D]` for an input of `dims`.
fn weight_dims(g: &ConvGeometry, dims: &[usize], targets: &[(TensorKey, usize)]) -> Vec<usize> {
    let out: usize = targets.iter().map(|(k, c)| c * k.components(g.d)).sum();
    let mut w = vec![out, dims[1]];
    w.extend(std::iter::repeat_n(g.kernel, g.d));
    w
}

fn arr<const N: usize>(v: &[usize]) -> [usize; N] {
    let mut a = [0; N];
    a.copy_from_slice(&v[..N]);
    a
}

/// Inserts `s − 1` zeros between neighbouring cells of each spatial axis.
pub(crate) fn dilate<const R: usize>(x: Tensor<R>, by: &[usize]) -> Tensor<R> {
    let mut x = x;
    for (a, &s) in by.iter().enumerate() {
        if s <= 1 {
            continue;
        }
        let axis = 2 + a;
        let dims = x.dims();
        let n = dims[axis];
        let pre: usize = dims[..axis].iter().product();
        let post: usize = dims[axis + 1..].iter().product();
        let x4: Tensor<4> = x.reshape([pre, n, 1, post]);
        let zeros = Tensor::<4>::zeros([pre, n, s - 1, post], &x4.device());
        let spread = Tensor::cat(vec![x4, zeros], 2).reshape([pre, n * s, post]);
        let spread = spread.narrow(1, 0, (n - 1) * s + 1);
        let mut out = dims;
        out[axis] = (n - 1) * s + 1;
        x = spread.reshape(out);
    }
    x
}

fn describe(sig: &[(TensorKey, usize)]) -> String {
    let parts: Vec<String> = sig.iter().map(|(k, c)| format!("{k}:{c}")).collect();
    format!("{{{}}}", parts.join(", "))
}

impl TorchState for ConvContract {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        for ((kin, kout), w) in self.pairs.iter().zip(&self.weights) {
            v.param(&key(prefix, &format!("weights.{kin}.{kout}")), w);
        }
        for (k, b) in self.bias_keys.iter().zip(&self.biases) {
            v.param(&key(prefix, &format!("bias.{k}")), b);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let mut weights = Vec::with_capacity(self.weights.len());
        for ((kin, kout), w) in self.pairs.iter().zip(self.weights) {
            weights.push(l.param(&key(prefix, &format!("weights.{kin}.{kout}")), w)?);
        }
        let mut biases = Vec::with_capacity(self.biases.len());
        for (k, b) in self.bias_keys.iter().zip(self.biases) {
            biases.push(l.param(&key(prefix, &format!("bias.{k}")), b)?);
        }
        Ok(ConvContract {
            weights,
            biases,
            ..self
        })
    }
}
