//! [`NdParam`]: a trainable tensor whose rank is known only at run time.

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::{Error, Result};
use idx_flow_core::init::draw;
use idx_flow_core::state_dict::{StateLoader, StateVisitor};

/// A parameter of rank 1 to 6, so that one layer type serves 1-, 2- and 3-D
/// grids while its parameters keep pdequinox's shapes (`weight`
/// `[C_out, C_in, *k]` is rank 3 on a line and rank 5 in a volume).
#[derive(Module, Debug)]
pub enum NdParam {
    /// Rank 1.
    R1(Param<Tensor<1>>),
    /// Rank 2.
    R2(Param<Tensor<2>>),
    /// Rank 3.
    R3(Param<Tensor<3>>),
    /// Rank 4.
    R4(Param<Tensor<4>>),
    /// Rank 5.
    R5(Param<Tensor<5>>),
    /// Rank 6.
    R6(Param<Tensor<6>>),
}

/// Runs `$body` with `$p` bound to the inner `Param<Tensor<R>>`.
macro_rules! each {
    ($self:expr, $p:ident => $body:expr) => {
        match $self {
            NdParam::R1($p) => $body,
            NdParam::R2($p) => $body,
            NdParam::R3($p) => $body,
            NdParam::R4($p) => $body,
            NdParam::R5($p) => $body,
            NdParam::R6($p) => $body,
        }
    };
}

/// Builds the variant of `shape`'s rank from `$make::<R>(array)`.
macro_rules! build {
    ($shape:expr, |$a:ident| $make:expr) => {{
        let s: &[usize] = $shape;
        match s.len() {
            1 => {
                let $a: [usize; 1] = s.try_into().unwrap();
                NdParam::R1(Param::from_tensor($make))
            }
            2 => {
                let $a: [usize; 2] = s.try_into().unwrap();
                NdParam::R2(Param::from_tensor($make))
            }
            3 => {
                let $a: [usize; 3] = s.try_into().unwrap();
                NdParam::R3(Param::from_tensor($make))
            }
            4 => {
                let $a: [usize; 4] = s.try_into().unwrap();
                NdParam::R4(Param::from_tensor($make))
            }
            5 => {
                let $a: [usize; 5] = s.try_into().unwrap();
                NdParam::R5(Param::from_tensor($make))
            }
            6 => {
                let $a: [usize; 6] = s.try_into().unwrap();
                NdParam::R6(Param::from_tensor($make))
            }
            n => {
                return Err(Error::arg(
                    "parameter shape",
                    format!("rank {n} ({s:?}), expected rank 1 to 6"),
                ));
            }
        }
    }};
}

impl NdParam {
    /// Zeros of `shape` (rank 1 to 6).
    pub fn zeros(shape: &[usize], device: &Device) -> Result<Self> {
        Ok(build!(shape, |a| Tensor::zeros(a, device)))
    }

    /// `values` (row-major) shaped `shape`.
    pub fn from_values(values: Vec<f32>, shape: &[usize], device: &Device) -> Result<Self> {
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(Error::Shape {
                context: "NdParam values".into(),
                expected: format!("{n} values for shape {shape:?}"),
                got: format!("{} values", values.len()),
            });
        }
        Ok(build!(shape, |a| Tensor::from_data(
            TensorData::new(values, a),
            device
        )))
    }

    /// Draws from `dist` (through [`with_seed`](idx_flow_core::init::with_seed)'s
    /// generator when one is installed).
    pub fn random(shape: &[usize], dist: Distribution, device: &Device) -> Result<Self> {
        Ok(build!(shape, |a| draw(a, dist, device)))
    }

    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        each!(self, p => p.val().dims().to_vec())
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        each!(self, p => p.val().dims().len())
    }

    /// The value reshaped to `shape` (same number of elements; autodiff flows
    /// back to the parameter).
    pub fn reshaped<const R: usize>(&self, shape: [usize; R]) -> Tensor<R> {
        each!(self, p => p.val().reshape(shape))
    }

    /// The value, flattened.
    pub fn flat(&self) -> Tensor<1> {
        each!(self, p => p.val().flatten(0, p.val().dims().len() - 1))
    }

    /// The values (row-major, f32) and shape.
    pub fn to_vec(&self) -> (Vec<f32>, Vec<usize>) {
        let dims = self.dims();
        let v = self
            .flat()
            .into_data()
            .convert::<f32>()
            .iter::<f32>()
            .collect();
        (v, dims)
    }

    /// Hands the inner parameter to a state visitor under `name`.
    pub(crate) fn visit<V: StateVisitor>(&self, name: &str, v: &mut V) {
        each!(self, p => v.param(name, p))
    }

    /// Replaces the value by the loader's entry `name` (same shape).
    pub(crate) fn load(self, name: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(match self {
            NdParam::R1(p) => NdParam::R1(l.param(name, p)?),
            NdParam::R2(p) => NdParam::R2(l.param(name, p)?),
            NdParam::R3(p) => NdParam::R3(l.param(name, p)?),
            NdParam::R4(p) => NdParam::R4(l.param(name, p)?),
            NdParam::R5(p) => NdParam::R5(l.param(name, p)?),
            NdParam::R6(p) => NdParam::R6(l.param(name, p)?),
        })
    }
}
