//! [`LstAttention`]: attention by a linear spectral transform along the
//! sequence (spectrans' `LSTAttention`).
//!
//! Per head, with `T` an orthonormal transform along the `N` tokens (DCT-II,
//! DST-II, or Walsh–Hadamard for `N` a power of two), `a = Tq ⊙ Tk ⊙ s_h`
//! (`s` the learned per-head scale `[heads, 1, d]`) and
//! `out = Tᵀ[a ⊙ Tv / (Σ_d |a| + 10⁻⁶)]` (the division only with
//! `normalize`), then `out_proj`. [`LstTransform::Mixed`] cycles DCT, DST,
//! Hadamard over the heads. Linear in `N` apart from the `O(N²)` transform.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::{LstAttentionConfig, LstTransform};
//!
//! let device = Device::default();
//! let lst = LstAttentionConfig::new(16).with_num_heads(4).init(&device)?;
//! let x = Tensor::<3>::random([2, 48, 16], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(lst.try_forward(x.clone())?.dims(), [2, 48, 16]);
//! // Hadamard needs a power-of-two sequence; 48 tokens is an error.
//! let had = LstAttentionConfig::new(16).with_transform(LstTransform::Hadamard).init(&device)?;
//! assert!(had.try_forward(x).is_err());
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::transforms::{dct, dst, hadamard, to_tensor};
use super::{check_tokens, positive};
use crate::{Error, Result};
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_nn::{Linear, LinearConfig};

/// The transform along the sequence.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum LstTransform {
    /// Orthonormal DCT-II.
    Dct,
    /// Orthonormal DST-II.
    Dst,
    /// Normalised Walsh–Hadamard, natural order (`N` a power of two).
    Hadamard,
    /// DCT, DST, Hadamard, DCT, … by head.
    Mixed,
}

/// Configuration of an [`LstAttention`].
#[derive(Config, Debug)]
pub struct LstAttentionConfig {
    /// Hidden width `H` (divisible by the heads).
    pub hidden_dim: usize,
    /// Heads. Default: 8.
    #[config(default = 8)]
    pub num_heads: usize,
    /// Transform. Default: DCT.
    #[config(default = "LstTransform::Dct")]
    pub transform: LstTransform,
    /// Divide by `Σ_d |a| + 10⁻⁶`. Default: true.
    #[config(default = true)]
    pub normalize: bool,
    /// Biases in the projections. Default: true.
    #[config(default = true)]
    pub bias: bool,
}

/// Linear spectral transform attention (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct LstAttention {
    /// `q_proj` `[H, H]`.
    pub q_proj: Linear,
    /// `k_proj` `[H, H]`.
    pub k_proj: Linear,
    /// `v_proj` `[H, H]`.
    pub v_proj: Linear,
    /// `out_proj` `[H, H]`.
    pub out_proj: Linear,
    /// `[heads, 1, d]`, ones at start (`scale`).
    pub scale: Param<Tensor<3>>,
    /// Transform.
    #[module(skip)]
    pub transform: LstTransform,
    /// Whether the output is normalised.
    pub normalize: bool,
}

impl LstAttentionConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<LstAttention> {
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
        let lin = || LinearConfig::new(h, h).with_bias(self.bias).init(device);
        Ok(LstAttention {
            q_proj: lin()?,
            k_proj: lin()?,
            v_proj: lin()?,
            out_proj: lin()?,
            scale: Param::from_tensor(Tensor::ones(
                [self.num_heads, 1, h / self.num_heads],
                device,
            )),
            transform: self.transform,
            normalize: self.normalize,
        })
    }
}

impl LstAttention {
    /// Hidden width.
    pub fn hidden_dim(&self) -> usize {
        self.out_proj.d_output()
    }

    /// Heads.
    pub fn num_heads(&self) -> usize {
        self.scale.val().dims()[0]
    }

    /// The transform of each head, stacked `[heads, N, N]`.
    fn matrices(&self, n: usize, device: &Device) -> Result<Tensor<3>> {
        let one = |t: LstTransform| -> Result<Tensor<2>> {
            let m = match t {
                LstTransform::Dct => dct(n),
                LstTransform::Dst => dst(n),
                LstTransform::Hadamard => hadamard(n).map_err(|_| Error::Shape {
                    context: "LstAttention input (Hadamard transform)".into(),
                    expected: "[B, N, H] with N a power of two".into(),
                    got: format!("N = {n}"),
                })?,
                LstTransform::Mixed => unreachable!("resolved per head"),
            };
            Ok(to_tensor(&m, n, n, device))
        };
        let h = self.num_heads();
        let per_head: Vec<Tensor<2>> = match self.transform {
            LstTransform::Mixed => {
                let cycle = [LstTransform::Dct, LstTransform::Dst, LstTransform::Hadamard];
                (0..h).map(|i| one(cycle[i % 3])).collect::<Result<_>>()?
            }
            t => vec![one(t)?; h],
        };
        Ok(Tensor::stack(per_head, 0))
    }

    /// `[B, N, H]` → `[B, N, H]`; Hadamard transforms need `N` a power of two.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let hdim = self.hidden_dim();
        let [b, n, _] = check_tokens("LstAttention", &x, Some(hdim))?;
        let (h, d) = (self.num_heads(), hdim / self.num_heads());
        let t = self.matrices(n, &x.device())?;
        // Per head: [B, N, d] → [heads, N, B·d], so one batched product applies
        // each head's transform along the sequence.
        let apply = |m: Tensor<3>, y: Tensor<4>| -> Tensor<4> {
            let y = y.permute([1, 2, 0, 3]).reshape([h, n, b * d]);
            m.matmul(y).reshape([h, n, b, d]).permute([2, 0, 1, 3])
        };
        let heads = |y: Tensor<3>| y.reshape([b, n, h, d]).swap_dims(1, 2);
        let tq = apply(t.clone(), heads(self.q_proj.forward(x.clone())));
        let tk = apply(t.clone(), heads(self.k_proj.forward(x.clone())));
        let tv = apply(t.clone(), heads(self.v_proj.forward(x)));
        let a = tq * tk * self.scale.val().unsqueeze::<4>();
        let mut o = a.clone() * tv;
        if self.normalize {
            o = o / (a.abs().sum_dim(3) + 1e-6);
        }
        let out = apply(t.swap_dims(1, 2), o)
            .swap_dims(1, 2)
            .reshape([b, n, hdim]);
        Ok(self.out_proj.forward(out))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for LstAttention {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.q_proj.visit_state(&key(prefix, "q_proj."), v);
        self.k_proj.visit_state(&key(prefix, "k_proj."), v);
        self.v_proj.visit_state(&key(prefix, "v_proj."), v);
        self.out_proj.visit_state(&key(prefix, "out_proj."), v);
        v.param(&key(prefix, "scale"), &self.scale);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(LstAttention {
            q_proj: self.q_proj.load_state(&key(prefix, "q_proj."), l)?,
            k_proj: self.k_proj.load_state(&key(prefix, "k_proj."), l)?,
            v_proj: self.v_proj.load_state(&key(prefix, "v_proj."), l)?,
            out_proj: self.out_proj.load_state(&key(prefix, "out_proj."), l)?,
            scale: l.param(&key(prefix, "scale"), self.scale)?,
            ..self
        })
    }
}
