//! [`SpectralAttention`]: linear-time attention through random features
//! (Performer's FAVOR+), spectrans' `SpectralAttention` done as the method
//! defines it.
//!
//! Per head, with `φ` a random feature map of `m` features,
//! `out = φ(Q)·(φ(K)ᵀV) / (φ(Q)·Σ_n φ(K_n) + ε)`, then `out_proj`.
//!
//! - [`AttentionKernel::Softmax`]: `φ(x) = exp(ωᵀx' − |x'|²/2)/√m` with
//!   `x' = d^(−1/4)·x` and `ω ~ N(0, I_d)`, an unbiased estimate of
//!   `exp(q·k/√d)`, the softmax kernel. Every feature is positive, so the
//!   normaliser is a sum of positive terms plus `ε`: never zero or negative.
//!   The exponent is shifted by its maximum (over features for a query, over
//!   features and tokens for the keys, without gradient) before `exp`, which
//!   cancels between numerator and normaliser and keeps both from overflowing
//!   or underflowing.
//! - [`AttentionKernel::Gaussian`]: positive features of the Gaussian kernel
//!   `exp(−|q' − k'|²/2)`: `φ(x) = exp(ωᵀx' − |x'|²)/√m`, same guarantees.
//! - [`AttentionKernel::Trigonometric`]: spectrans' Gaussian random Fourier
//!   features `φ(x) = cos(ωᵀx' + b)·√(2/m)`. They are signed, so the
//!   normaliser can be zero or negative; offered to load spectrans models only.
//!
//! With `orthogonal` (the default), the directions of the `ω` are orthogonal
//! within each block of `d` features and their norms are those of independent
//! `N(0, I_d)` vectors (Performer's ORF). spectrans instead uses unit-norm
//! directions and no `d^(−1/4)` scaling ([`FeatureScale::One`] with its buffer
//! reproduces it exactly).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::SpectralAttentionConfig;
//!
//! let device = Device::default();
//! let attn = SpectralAttentionConfig::new(16).with_num_heads(4).with_num_features(Some(32)).init(&device)?;
//! assert_eq!(attn.projection.dims(), [4, 32]);
//! let x = Tensor::<3>::random([2, 48, 16], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(attn.try_forward(x)?.dims(), [2, 48, 16]);
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use std::f64::consts::TAU;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::{check_tokens, positive};
use crate::{Error, Result};
use idx_flow_core::init::draw;
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_nn::{Linear, LinearConfig};

/// The kernel the random features estimate.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// `exp(q'·k')` by positive features (FAVOR+).
    Softmax,
    /// `exp(−|q' − k'|²/2)` by positive features.
    Gaussian,
    /// `exp(−|q' − k'|²/2)` by signed cosine features (spectrans' "gaussian").
    Trigonometric,
}

/// How queries and keys are scaled before the features.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum FeatureScale {
    /// `d^(−1/4)` (the attention's `1/√d` temperature, split between `q` and `k`).
    Performer,
    /// Unscaled (spectrans).
    One,
}

/// Configuration of a [`SpectralAttention`].
#[derive(Config, Debug)]
pub struct SpectralAttentionConfig {
    /// Hidden width `H` (divisible by the heads).
    pub hidden_dim: usize,
    /// Heads. Default: 8.
    #[config(default = 8)]
    pub num_heads: usize,
    /// Random features `m`; `None` is the head width. Default: None.
    #[config(default = "None")]
    pub num_features: Option<usize>,
    /// Kernel. Default: softmax.
    #[config(default = "AttentionKernel::Softmax")]
    pub kernel: AttentionKernel,
    /// Orthogonal random features. Default: true.
    #[config(default = true)]
    pub orthogonal: bool,
    /// Query/key scaling. Default: Performer's `d^(−1/4)`.
    #[config(default = "FeatureScale::Performer")]
    pub feature_scale: FeatureScale,
    /// Biases in the projections. Default: true.
    #[config(default = true)]
    pub bias: bool,
    /// Added to the normaliser. Default: 1e-6.
    #[config(default = 1e-6)]
    pub eps: f64,
}

/// Random-feature linear attention (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct SpectralAttention {
    /// `q_proj` `[H, H]`.
    pub q_proj: Linear,
    /// `k_proj` `[H, H]`.
    pub k_proj: Linear,
    /// `v_proj` `[H, H]`.
    pub v_proj: Linear,
    /// `out_proj` `[H, H]`.
    pub out_proj: Linear,
    /// The random directions `ω` as columns, `[d, m]` (buffer
    /// `kernel.projection`, or `kernel.omega` for the trigonometric kernel).
    pub projection: Tensor<2>,
    /// The random phases `b` `[m]` of the trigonometric kernel (`kernel.bias`).
    pub phase: Option<Tensor<1>>,
    /// Heads.
    pub num_heads: usize,
    /// Kernel.
    #[module(skip)]
    pub kernel: AttentionKernel,
    /// Query/key scaling.
    #[module(skip)]
    pub feature_scale: FeatureScale,
    /// Added to the normaliser.
    pub eps: f64,
}

/// `[d, m]` random directions: `N(0, I_d)` columns, or orthogonal blocks of
/// `d` directions with Gaussian-vector norms.
fn random_directions(d: usize, m: usize, orthogonal: bool, device: &Device) -> Tensor<2> {
    let g: Vec<f64> = draw([m, d], Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .convert::<f64>()
        .iter::<f64>()
        .collect();
    if !orthogonal {
        let t: Tensor<2> = Tensor::from_data(TensorData::new(g, [m, d]), device);
        return t.transpose();
    }
    let norms: Vec<f64> = draw([m, d], Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .convert::<f64>()
        .iter::<f64>()
        .collect::<Vec<_>>()
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    // Gram–Schmidt within each block of d rows (a Gaussian matrix has full
    // rank with probability one; a degenerate row keeps its raw direction).
    let mut rows: Vec<Vec<f64>> = g.chunks(d).map(<[f64]>::to_vec).collect();
    for start in (0..m).step_by(d) {
        for i in start..(start + d).min(m) {
            for j in start..i {
                let dot: f64 = (0..d).map(|t| rows[i][t] * rows[j][t]).sum();
                let rj = rows[j].clone();
                for (a, b) in rows[i].iter_mut().zip(&rj) {
                    *a -= dot * b;
                }
            }
            let nrm = rows[i].iter().map(|v| v * v).sum::<f64>().sqrt();
            if nrm > 1e-12 {
                for a in rows[i].iter_mut() {
                    *a /= nrm;
                }
            }
        }
    }
    let flat: Vec<f32> = rows
        .iter()
        .zip(&norms)
        .flat_map(|(r, n)| r.iter().map(move |v| (v * n) as f32))
        .collect();
    let t: Tensor<2> = Tensor::from_data(TensorData::new(flat, [m, d]), device);
    t.transpose()
}

impl SpectralAttentionConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<SpectralAttention> {
        let h = self.hidden_dim;
        positive("hidden_dim", h)?;
        positive("num_heads", self.num_heads)?;
        if !h.is_multiple_of(self.num_heads) {
            return Err(Error::arg(
                "num_heads",
                format!(
                    "hidden_dim ({h}) must be divisible by num_heads ({})",
                    self.num_heads
                ),
            ));
        }
        let d = h / self.num_heads;
        let m = self.num_features.unwrap_or(d);
        positive("num_features", m)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::arg("eps", format!("got {}, expected > 0", self.eps)));
        }
        let lin = || LinearConfig::new(h, h).with_bias(self.bias).init(device);
        let phase = (self.kernel == AttentionKernel::Trigonometric)
            .then(|| draw([m], Distribution::Uniform(0.0, TAU), device));
        Ok(SpectralAttention {
            q_proj: lin()?,
            k_proj: lin()?,
            v_proj: lin()?,
            out_proj: lin()?,
            projection: random_directions(d, m, self.orthogonal, device),
            phase,
            num_heads: self.num_heads,
            kernel: self.kernel,
            feature_scale: self.feature_scale,
            eps: self.eps,
        })
    }
}

impl SpectralAttention {
    /// Hidden width.
    pub fn hidden_dim(&self) -> usize {
        self.out_proj.d_output()
    }

    /// Random features per head.
    pub fn num_features(&self) -> usize {
        self.projection.dims()[1]
    }

    /// Features `[B, heads, N, m]` of `x` `[B, heads, N, d]`; `keys` shifts
    /// the exponent by its maximum over tokens and features, otherwise over features.
    fn features(&self, x: Tensor<4>, keys: bool) -> Tensor<4> {
        let [b, h, n, d] = x.dims();
        let m = self.num_features();
        let s = match self.feature_scale {
            FeatureScale::Performer => (d as f64).powf(-0.25),
            FeatureScale::One => 1.0,
        };
        let x = x * s;
        let z = x
            .clone()
            .reshape([b * h * n, d])
            .matmul(self.projection.clone())
            .reshape([b, h, n, m]);
        let sq = || x.clone().square().sum_dim(3); // [B, h, N, 1]
        let exponent = match self.kernel {
            AttentionKernel::Softmax => z - sq() * 0.5,
            AttentionKernel::Gaussian => z - sq(),
            AttentionKernel::Trigonometric => {
                let z = match &self.phase {
                    Some(p) => z + p.clone().reshape([1, 1, 1, m]),
                    None => z,
                };
                return z.cos() * (2.0 / m as f64).sqrt();
            }
        };
        let shift = if keys {
            exponent
                .clone()
                .reshape([b, h, n * m])
                .max_dim(2)
                .reshape([b, h, 1, 1])
        } else {
            exponent.clone().max_dim(3)
        };
        (exponent - shift.detach()).exp() / (m as f64).sqrt()
    }

    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let hdim = self.hidden_dim();
        let [b, n, _] = check_tokens("SpectralAttention", &x, Some(hdim))?;
        let (h, d) = (self.num_heads, hdim / self.num_heads);
        let heads = |t: Tensor<3>| t.reshape([b, n, h, d]).swap_dims(1, 2);
        let q = heads(self.q_proj.forward(x.clone()));
        let k = heads(self.k_proj.forward(x.clone()));
        let v = heads(self.v_proj.forward(x));
        let (fq, fk) = (self.features(q, false), self.features(k, true));
        let kv = fk.clone().swap_dims(2, 3).matmul(v); // [B, h, m, d]
        let num = fq.clone().matmul(kv); // [B, h, N, d]
        let ksum = fk.sum_dim(2).swap_dims(2, 3); // [B, h, m, 1]
        let den = fq.matmul(ksum) + self.eps; // [B, h, N, 1]
        let out = (num / den).swap_dims(1, 2).reshape([b, n, hdim]);
        Ok(self.out_proj.forward(out))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpectralAttention {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.q_proj.visit_state(&key(prefix, "q_proj."), v);
        self.k_proj.visit_state(&key(prefix, "k_proj."), v);
        self.v_proj.visit_state(&key(prefix, "v_proj."), v);
        self.out_proj.visit_state(&key(prefix, "out_proj."), v);
        match &self.phase {
            None => v.buffer(&key(prefix, "kernel.projection"), &self.projection),
            Some(p) => {
                v.buffer(&key(prefix, "kernel.omega"), &self.projection);
                v.buffer(&key(prefix, "kernel.bias"), p);
            }
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let (projection, phase) = match self.phase {
            None => (
                l.buffer(&key(prefix, "kernel.projection"), self.projection)?,
                None,
            ),
            Some(p) => (
                l.buffer(&key(prefix, "kernel.omega"), self.projection)?,
                Some(l.buffer(&key(prefix, "kernel.bias"), p)?),
            ),
        };
        Ok(SpectralAttention {
            q_proj: self.q_proj.load_state(&key(prefix, "q_proj."), l)?,
            k_proj: self.k_proj.load_state(&key(prefix, "k_proj."), l)?,
            v_proj: self.v_proj.load_state(&key(prefix, "v_proj."), l)?,
            out_proj: self.out_proj.load_state(&key(prefix, "out_proj."), l)?,
            projection,
            phase,
            ..self
        })
    }
}
