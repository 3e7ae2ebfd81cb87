//! [`VectorNeuronNonlinear`]: the nonlinearity of Vector Neurons
//! (Deng et al. 2021) as ginjax applies it to every key but scalars.
//!
//! For a block of key `(k, p) ≠ (0, 0)`, per cell: a learned channel mix
//! `q = W x` gives a direction `u = q / (|q| + eps)` (Frobenius norm over the
//! components); the input splits into its part along `u`, `a u` with
//! `a = ⟨x, u⟩`, and the rest; the output is
//! `relu(a)/(|a| + eps) · a u + (x − a u)`, which keeps `x` where `a > 0`
//! and drops its part along `u` where `a < 0`. Channel mixing, norms and
//! inner products commute with the group, so the layer does too.
//! Scalars `(0, 0)` go through the scalar activation.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_equivariant::{MultiImage, TensorKey, VectorNeuronNonlinearConfig};
//!
//! let device = Device::default();
//! let keys = vec![(TensorKey::SCALAR, 2), (TensorKey::VECTOR, 3)];
//! let vn = VectorNeuronNonlinearConfig::new(2, keys).init(&device)?;
//! let x = MultiImage::<4>::new(vec![true, true])?
//!     .with(TensorKey::SCALAR, Tensor::random([1, 2, 8, 8], Distribution::Default, &device))?
//!     .with(TensorKey::VECTOR, Tensor::random([1, 6, 8, 8], Distribution::Default, &device))?;
//! let y = vn.try_forward(x)?;
//! assert_eq!(y.get(TensorKey::VECTOR).unwrap().dims(), [1, 6, 8, 8]);
//! # Ok::<(), idx_flow_equivariant::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};

use super::image::{MultiImage, TensorKey, check_d, check_signature};
use super::wrapper::ScalarActivation;
use crate::{Error, Result};
use idx_flow_core::init::draw;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};

/// Configuration of a [`VectorNeuronNonlinear`].
#[derive(Config, Debug)]
pub struct VectorNeuronNonlinearConfig {
    /// Spatial dimensions `D` (2 or 3).
    pub d: usize,
    /// Keys and channels.
    pub input_keys: Vec<(TensorKey, usize)>,
    /// Activation of scalars. Default: ReLU.
    #[config(default = "ScalarActivation::Relu")]
    pub scalar_activation: ScalarActivation,
    /// Keeps divisions finite. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
}

/// ginjax's `VectorNeuronNonlinear` (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct VectorNeuronNonlinear {
    /// `[C, C]` per non-scalar key (`weights.{key}`), in the order of [`keys`](Self::keys).
    pub weights: Vec<Param<Tensor<2>>>,
    #[module(skip)]
    keys: Vec<(TensorKey, usize)>,
    /// Activation of scalars.
    #[module(skip)]
    pub scalar_activation: ScalarActivation,
    /// Keeps divisions finite.
    pub eps: f64,
    #[module(skip)]
    d: usize,
}

impl VectorNeuronNonlinearConfig {
    /// Builds the layer with ginjax's initialisation `W ~ U(±1/√C)`.
    pub fn init(&self, device: &Device) -> Result<VectorNeuronNonlinear> {
        check_d(self.d)?;
        let keys = check_signature("input_keys", &self.input_keys)?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::arg(
                "eps",
                format!("got {}, expected a finite positive number", self.eps),
            ));
        }
        let weights = keys
            .iter()
            .filter(|(k, _)| **k != TensorKey::SCALAR)
            .map(|(_, &c)| {
                let b = 1.0 / (c as f64).sqrt();
                Param::from_tensor(draw([c, c], Distribution::Uniform(-b, b), device))
            })
            .collect();
        Ok(VectorNeuronNonlinear {
            weights,
            keys: keys.into_iter().collect(),
            scalar_activation: self.scalar_activation,
            eps: self.eps,
            d: self.d,
        })
    }
}

impl VectorNeuronNonlinear {
    /// Keys and channels.
    pub fn keys(&self) -> &[(TensorKey, usize)] {
        &self.keys
    }

    /// Blocks `[B, C·D^k, *N]` of the keys → the same shapes. An error for
    /// other keys or channels, or a wrong rank.
    pub fn try_forward<const R: usize>(&self, x: MultiImage<R>) -> Result<MultiImage<R>> {
        let sig = x.signature();
        if R != self.d + 2 || sig != self.keys {
            return Err(Error::Shape {
                context: "VectorNeuronNonlinear input".into(),
                expected: format!("rank {} blocks of {:?}", self.d + 2, self.keys),
                got: format!("rank {R} blocks of {sig:?}"),
            });
        }
        let weighted: Vec<TensorKey> = self
            .keys
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != TensorKey::SCALAR)
            .collect();
        x.try_map(|k, t| {
            if k == TensorKey::SCALAR {
                return Ok(self.scalar_activation.apply(t));
            }
            let i = weighted.iter().position(|w| *w == k).unwrap_or(0);
            Ok(self.vector(k, t, self.weights[i].val()))
        })
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: MultiImage<R>) -> MultiImage<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }

    fn vector<const R: usize>(&self, key: TensorKey, x: Tensor<R>, w: Tensor<2>) -> Tensor<R> {
        let dims = x.dims();
        let n = key.components(self.d);
        let (b, c) = (dims[0], dims[1] / n);
        let cells: usize = dims[2..].iter().product();
        let x3: Tensor<3> = x.reshape([b, c, n * cells]);
        let q: Tensor<4> = w
            .unsqueeze::<3>()
            .matmul(x3.clone())
            .reshape([b, c, n, cells]);
        let x4: Tensor<4> = x3.reshape([b, c, n, cells]);
        let norm = q.clone().powi_scalar(2).sum_dim(2).sqrt();
        let u = q / (norm + self.eps);
        let a = (x4.clone() * u.clone()).sum_dim(2);
        let parallel = a.clone() * u;
        let h = relu(a.clone()) / (a.abs() + self.eps);
        (parallel.clone() * h + (x4 - parallel)).reshape(dims)
    }
}

impl TorchState for VectorNeuronNonlinear {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        let keys = self.keys.iter().filter(|(k, _)| *k != TensorKey::SCALAR);
        for ((k, _), w) in keys.zip(&self.weights) {
            v.param(&key(prefix, &format!("weights.{k}")), w);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let keys: Vec<TensorKey> = self
            .keys
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| *k != TensorKey::SCALAR)
            .collect();
        let mut weights = Vec::with_capacity(self.weights.len());
        for (k, w) in keys.iter().zip(self.weights) {
            weights.push(l.param(&key(prefix, &format!("weights.{k}")), w)?);
        }
        Ok(VectorNeuronNonlinear { weights, ..self })
    }
}
