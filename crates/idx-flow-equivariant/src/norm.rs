//! [`EquivariantGroupNorm`] and [`EquivariantLayerNormConfig`] (a group norm with one group):
//! ginjax's equivariant normalisation of multi-images.
//!
//! - Scalars `(0, 0)`: Equinox's `GroupNorm` — centre and divide by the
//!   standard deviation over the group's channels and all cells, then
//!   `· weight[c] + bias[c]` (`vanilla_norm.k0p0.weight` / `.bias`).
//! - Pseudoscalars `(0, 1)`: the same with `weight` only. (ginjax keeps the
//!   bias there too, which breaks reflection equivariance: a reflection flips
//!   the sign of the input but not of the bias.)
//! - Tensors (`k ≥ 1`): centre by the group mean (over the group's channels
//!   and cells, per component), whiten with the inverse square root of the
//!   biased `D^k × D^k` covariance of the group, `(C + eps·I)^(−1/2)`, then
//!   `· scale[c] + mean[c] · bias[c]` where `mean[c]` is the spatial mean of
//!   the input channel (`scale.{key}`, `bias.{key}`). Since `g^{⊗k}` is
//!   orthogonal the whitening commutes with the group. ginjax implements
//!   `k = 1` only; here any `k` works the same way.
//!
//! The inverse square root comes from an eigendecomposition (Jacobi, in
//! `f64`, on the host); its gradient is the exact one of the matrix function
//! (Daleckii–Krein), carried by tensor operations, so every backend can
//! differentiate the layer.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_equivariant::{EquivariantLayerNormConfig, MultiImage, TensorKey};
//!
//! let device = Device::default();
//! let norm = EquivariantLayerNormConfig::new(2, vec![(TensorKey::VECTOR, 2)]).init(&device)?;
//! let x = MultiImage::<4>::new(vec![true, true])?.with(
//!     TensorKey::VECTOR,
//!     Tensor::random([1, 4, 8, 8], Distribution::Normal(3.0, 2.0), &device),
//! )?;
//! let y = norm.try_forward(x)?;
//! // Whitened: the vectors of the layer have zero mean and unit covariance.
//! let v = y.get(TensorKey::VECTOR).unwrap().clone().reshape([2, 2, 64]);
//! let m = v.clone().mean_dims(&[0, 2]).into_data().to_vec::<f32>().unwrap();
//! assert!(m.iter().all(|x| x.abs() < 1e-4));
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::image::{MultiImage, TensorKey, check_d, check_signature};
use crate::{Error, Result};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};

/// Configuration of an [`EquivariantGroupNorm`].
#[derive(Config, Debug)]
pub struct EquivariantGroupNormConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Channel groups; divides every key's channels.
    pub groups: usize,
    /// Added to the variance (eigenvalues of the covariance). Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
}

/// Configuration of a layer norm: an [`EquivariantGroupNorm`] with one group.
#[derive(Config, Debug)]
pub struct EquivariantLayerNormConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Added to the variance. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
}

impl EquivariantLayerNormConfig {
    /// Builds the norm (scales 1, biases 0).
    pub fn init(&self, device: &Device) -> Result<EquivariantGroupNorm> {
        EquivariantGroupNormConfig::new(self.d, self.input_keys.clone(), 1)
            .with_eps(self.eps)
            .init(device)
    }
}

/// ginjax's equivariant `EquivariantGroupNorm` (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct EquivariantGroupNorm {
    /// `[C]` per key, in the order of [`keys`](Self::keys): the scalar
    /// `weight` or the tensor `scale`.
    pub scales: Vec<Param<Tensor<1>>>,
    /// `[C]` per key: the scalar or tensor `bias`; none for pseudoscalars.
    pub biases: Vec<Option<Param<Tensor<1>>>>,
    #[module(skip)]
    keys: Vec<(TensorKey, usize)>,
    /// Channel groups.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
    #[module(skip)]
    d: usize,
}

impl EquivariantGroupNormConfig {
    /// Builds the norm (scales 1, biases 0). An error for bad keys, groups that
    /// do not divide every key's channels, or a non-positive `eps`.
    pub fn init(&self, device: &Device) -> Result<EquivariantGroupNorm> {
        check_d(self.d)?;
        let keys = check_signature("input_keys", &self.input_keys)?;
        if self.groups == 0 || keys.values().any(|c| !c.is_multiple_of(self.groups)) {
            return Err(Error::arg(
                "groups",
                format!(
                    "got {}, expected a divisor of every key's channels ({:?})",
                    self.groups,
                    keys.values().collect::<Vec<_>>()
                ),
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::arg(
                "eps",
                format!("got {}, expected a finite positive number", self.eps),
            ));
        }
        let scales = keys
            .values()
            .map(|&c| Param::from_tensor(Tensor::ones([c], device)))
            .collect();
        let biases = keys
            .iter()
            .map(|(k, &c)| {
                (*k != TensorKey::PSEUDOSCALAR)
                    .then(|| Param::from_tensor(Tensor::zeros([c], device)))
            })
            .collect();
        Ok(EquivariantGroupNorm {
            scales,
            biases,
            keys: keys.into_iter().collect(),
            groups: self.groups,
            eps: self.eps,
            d: self.d,
        })
    }
}

impl EquivariantGroupNorm {
    /// Keys and channels, in the order of the parameters.
    pub fn keys(&self) -> &[(TensorKey, usize)] {
        &self.keys
    }

    /// Blocks `[B, C·D^k, *N]` of the keys → the same shapes, normalised. An
    /// error for other keys or channels, or a wrong rank.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let sig = x.signature();
        if R != self.d + 2 || sig != self.keys {
            return Err(Error::Shape {
                context: "EquivariantGroupNorm input".into(),
                expected: format!("rank {} blocks of {:?}", self.d + 2, self.keys),
                got: format!("rank {R} blocks of {sig:?}"),
            });
        }
        x.try_map(|k, t| {
            let i = self.keys.iter().position(|(kk, _)| *kk == k).unwrap_or(0);
            let scale = self.scales[i].val();
            let bias = self.biases[i].as_ref().map(|b| b.val());
            Ok(if k.k == 0 {
                self.scalar(t, scale, bias)
            } else {
                self.tensor(k, t, scale, bias)
            })
        })
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    fn scalar<const R: usize>(
        &self,
        x: Tensor<R>,
        w: Tensor<1>,
        b: Option<Tensor<1>>,
    ) -> Tensor<R> {
        let dims = x.dims();
        let (bsz, c, g) = (dims[0], dims[1], self.groups);
        let cells: usize = dims[2..].iter().product();
        let xg: Tensor<3> = x.reshape([bsz, g, c / g * cells]);
        let centred = xg.clone() - xg.mean_dim(2);
        let var = centred.clone().powi_scalar(2).mean_dim(2);
        let y = (centred / (var + self.eps).sqrt()).reshape([bsz, c, cells]);
        let mut y = y * w.reshape([1, c, 1]);
        if let Some(b) = b {
            y = y + b.reshape([1, c, 1]);
        }
        y.reshape(dims)
    }

    fn tensor<const R: usize>(
        &self,
        key: TensorKey,
        x: Tensor<R>,
        scale: Tensor<1>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<R> {
        let dims = x.dims();
        let n = key.components(self.d);
        let (bsz, g) = (dims[0], self.groups);
        let c = dims[1] / n;
        let cells: usize = dims[2..].iter().product();
        let x4: Tensor<4> = x.reshape([bsz, c, n, cells]);
        let mean_vec = x4.clone().mean_dim(3);
        // [B, G, C/G, K, cells] → rows of K components: [B·G, C/G·cells, K].
        let rows: Tensor<3> = x4
            .reshape([bsz, g, c / g, n, cells])
            .permute([0, 1, 2, 4, 3])
            .reshape([bsz * g, c / g * cells, n]);
        let centred = rows.clone() - rows.mean_dim(1);
        let m = (c / g * cells) as f64;
        let cov = centred.clone().swap_dims(1, 2).matmul(centred.clone()) / m;
        let white = centred.matmul(inv_sqrt(cov, self.eps));
        let white: Tensor<4> = white
            .reshape([bsz, g, c / g, cells, n])
            .permute([0, 1, 2, 4, 3])
            .reshape([bsz, c, n, cells]);
        let mut y = white * scale.reshape([1, c, 1, 1]);
        if let Some(b) = bias {
            y = y + mean_vec * b.reshape([1, c, 1, 1]);
        }
        y.reshape(dims)
    }
}

/// `(A + eps·I)^(−1/2)` of symmetric positive semi-definite matrices `[m, n, n]`.
///
/// The value comes from a host eigendecomposition `A = V Λ Vᵀ`; the
/// derivative is added as `V (F ∘ (Vᵀ ΔA V)) Vᵀ` with `ΔA = A − detach(A)`
/// (zero, but carrying the gradient) and `F_ij = (f(λ_i) − f(λ_j))/(λ_i − λ_j)`
/// (`f'(λ_i)` for equal eigenvalues), the Fréchet derivative of `f(λ) = (λ + eps)^(−1/2)`.
pub(crate) fn inv_sqrt(a: Tensor<3>, eps: f64) -> Tensor<3> {
    let [m, n, _] = a.dims();
    let device = a.device();
    let values: Vec<f32> = a
        .clone()
        .detach()
        .into_data()
        .convert::<f32>()
        .iter::<f32>()
        .collect();
    let (mut vs, mut fs, mut s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..m {
        let mat: Vec<f64> = values[i * n * n..(i + 1) * n * n]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let (lam, v) = jacobi_eigen(&mat, n);
        let f: Vec<f64> = lam
            .iter()
            .map(|&l| 1.0 / (l + eps).max(f64::MIN_POSITIVE).sqrt())
            .collect();
        let df = |l: f64| -0.5 * (l + eps).max(f64::MIN_POSITIVE).powf(-1.5);
        let scale = lam.iter().fold(eps, |acc, l| acc.max(l.abs()));
        for r in 0..n {
            for q in 0..n {
                let d = lam[r] - lam[q];
                fs.push(if d.abs() > 1e-12 * scale {
                    ((f[r] - f[q]) / d) as f32
                } else {
                    df(0.5 * (lam[r] + lam[q])) as f32
                });
                let mut acc = 0.0;
                for t in 0..n {
                    acc += v[r * n + t] * f[t] * v[q * n + t];
                }
                s.push(acc as f32);
            }
        }
        vs.extend(v.iter().map(|&x| x as f32));
    }
    let t = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [m, n, n]), &device);
    let (v, f, s) = (t(vs), t(fs), t(s));
    let delta = a.clone() - a.detach();
    let vt = v.clone().swap_dims(1, 2);
    let inner = vt.clone().matmul(delta).matmul(v.clone()) * f;
    s + v.matmul(inner).matmul(vt)
}

/// Eigenvalues and eigenvectors (columns of the row-major `V`) of a symmetric
/// `n × n` matrix by cyclic Jacobi rotations.
fn jacobi_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    // Symmetrise: the covariance is symmetric up to rounding.
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = m;
            a[j * n + i] = m;
        }
    }
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

impl TorchState for EquivariantGroupNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        for (i, (k, _)) in self.keys.iter().enumerate() {
            let (w, b) = names(*k);
            v.param(&key(prefix, &w), &self.scales[i]);
            if let Some(bias) = &self.biases[i] {
                v.param(&key(prefix, &b), bias);
            }
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let mut scales = Vec::with_capacity(self.scales.len());
        let mut biases = Vec::with_capacity(self.biases.len());
        for ((k, _), (s, b)) in self
            .keys
            .iter()
            .zip(self.scales.into_iter().zip(self.biases))
        {
            let (wn, bn) = names(*k);
            scales.push(l.param(&key(prefix, &wn), s)?);
            biases.push(match b {
                Some(b) => Some(l.param(&key(prefix, &bn), b)?),
                None => None,
            });
        }
        Ok(EquivariantGroupNorm {
            scales,
            biases,
            ..self
        })
    }
}

/// ginjax's parameter names of a key: scalars live in an Equinox `EquivariantGroupNorm`.
fn names(k: TensorKey) -> (String, String) {
    if k.k == 0 {
        (
            format!("vanilla_norm.{k}.weight"),
            format!("vanilla_norm.{k}.bias"),
        )
    } else {
        (format!("scale.{k}"), format!("bias.{k}"))
    }
}
