//! Weight initialisers of idx_flow's `get_initializer`, with PyTorch's fan rules.
//!
//! PyTorch computes fans from a tensor's shape: `fan_in = shape[1]·r`,
//! `fan_out = shape[0]·r` with `r` the product of the remaining axes. So a
//! SpatialConv kernel `[k, C_in, F]` has `fan_in = C_in·F` and `fan_out = k·F`,
//! and a linear weight `[out, in]` has `fan_in = in`, `fan_out = out`;
//! [`Initializer::init`] applies the same rule to the shape it is given.
//!
//! ```
//! use burn::tensor::Device;
//! use idx_flow_core::{Initializer, WeightInit};
//!
//! let device = Device::default();
//! // xavier_uniform on [k, C_in, F] = [4, 3, 5]: bound sqrt(6 / (15 + 20)).
//! let w = Initializer::new(WeightInit::XavierUniform).init([4, 3, 5], &device)?;
//! let bound = (6.0f32 / 35.0).sqrt();
//! assert!(w.into_data().iter::<f32>().all(|v| v.abs() <= bound));
//! # Ok::<(), idx_flow_core::Error>(())
//! ```

use std::str::FromStr;

use burn::config::Config;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::{Error, Result};

/// idx_flow's `InitMethod`.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// `U(-b, b)`, `b = gain·sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// `N(0, σ²)`, `σ = gain·sqrt(2 / (fan_in + fan_out))`.
    XavierNormal,
    /// `U(-b, b)`, `b = gain(nonlinearity)·sqrt(3 / fan_in)` (mode fan_in, a = 0).
    KaimingUniform,
    /// `N(0, σ²)`, `σ = gain(nonlinearity) / sqrt(fan_in)` (mode fan_in, a = 0).
    KaimingNormal,
    /// A (semi-)orthogonal matrix of the tensor flattened to `[shape[0], rest]`, times gain.
    Orthogonal,
    /// `N(mean, std²)` (idx_flow's defaults 0 and 0.02).
    Normal,
    /// `U(a, b)` (idx_flow's defaults 0 and 1).
    Uniform,
    /// All zeros.
    Zeros,
}

impl WeightInit {
    /// All methods, in idx_flow's order.
    pub const ALL: [WeightInit; 8] = [
        WeightInit::XavierUniform,
        WeightInit::XavierNormal,
        WeightInit::KaimingUniform,
        WeightInit::KaimingNormal,
        WeightInit::Orthogonal,
        WeightInit::Normal,
        WeightInit::Uniform,
        WeightInit::Zeros,
    ];

    /// idx_flow's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightInit::XavierUniform => "xavier_uniform",
            WeightInit::XavierNormal => "xavier_normal",
            WeightInit::KaimingUniform => "kaiming_uniform",
            WeightInit::KaimingNormal => "kaiming_normal",
            WeightInit::Orthogonal => "orthogonal",
            WeightInit::Normal => "normal",
            WeightInit::Uniform => "uniform",
            WeightInit::Zeros => "zeros",
        }
    }
}

impl FromStr for WeightInit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                Error::arg(
                    "weight_init",
                    format!(
                        "unknown initialization method '{s}', expected one of xavier_uniform, \
                         xavier_normal, kaiming_uniform, kaiming_normal, orthogonal, normal, uniform, zeros"
                    ),
                )
            })
    }
}

/// The nonlinearity whose gain kaiming initialisation uses (PyTorch's `calculate_gain`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Nonlinearity {
    /// Gain 1.
    Linear,
    /// Gain 1.
    Sigmoid,
    /// Gain 5/3.
    Tanh,
    /// Gain √2.
    Relu,
    /// Gain `sqrt(2 / (1 + a²))` with idx_flow's `a = 0`: √2 (the default).
    LeakyRelu,
    /// Gain 3/4.
    Selu,
}

impl Nonlinearity {
    /// PyTorch's `calculate_gain(nonlinearity, 0)`.
    pub fn gain(self) -> f64 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu | Nonlinearity::LeakyRelu => 2f64.sqrt(),
            Nonlinearity::Selu => 0.75,
        }
    }
}

/// idx_flow's `get_initializer(method, gain, nonlinearity, mean, std, a, b)`.
#[derive(Config, Debug, PartialEq)]
pub struct Initializer {
    /// The method.
    pub method: WeightInit,
    /// Gain of xavier and orthogonal. Default: 1.
    #[config(default = 1.0)]
    pub gain: f64,
    /// Nonlinearity of kaiming. Default: leaky_relu (with a = 0, gain √2).
    #[config(default = "Nonlinearity::LeakyRelu")]
    pub nonlinearity: Nonlinearity,
    /// Mean of `normal`. Default: 0.
    #[config(default = 0.0)]
    pub mean: f64,
    /// Standard deviation of `normal`. Default: 0.02.
    #[config(default = 0.02)]
    pub std: f64,
    /// Lower bound of `uniform`. Default: 0.
    #[config(default = 0.0)]
    pub a: f64,
    /// Upper bound of `uniform`. Default: 1.
    #[config(default = 1.0)]
    pub b: f64,
}

/// PyTorch's `_calculate_fan_in_and_fan_out`: `(shape[1]·r, shape[0]·r)`.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::arg(
            "initializer",
            format!("fan in and fan out need a tensor with at least 2 axes, got shape {shape:?}"),
        ));
    }
    let r: usize = shape[2..].iter().product();
    Ok((shape[1] * r, shape[0] * r))
}

thread_local! {
    /// The generator of [`with_seed`], when one is installed on this thread.
    static SEEDED: std::cell::RefCell<Option<crate::rng::SplitMix64>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the initialisers of this thread drawing from a generator
/// seeded by `seed`, on the host, instead of the backend's process-wide random
/// state. Modules built inside `f` then get the same weights for the same seed
/// whatever other threads draw meanwhile (burn's CPU backend has one global
/// generator, so `device.seed(s)` followed by `init` is only reproducible when
/// nothing else runs). Nested calls restore the outer generator.
///
/// ```
/// use burn::tensor::Device;
/// use idx_flow_core::init::{Initializer, WeightInit, with_seed};
/// let device = Device::default();
/// let init = Initializer::new(WeightInit::KaimingUniform);
/// let a = with_seed(7, || init.init([4, 3, 5], &device))?;
/// let b = with_seed(7, || init.init([4, 3, 5], &device))?;
/// assert_eq!(a.into_data(), b.into_data());
/// # Ok::<(), idx_flow_core::Error>(())
/// ```
pub fn with_seed<T>(seed: u64, f: impl FnOnce() -> T) -> T {
    let previous = SEEDED.with(|g| g.replace(Some(crate::rng::SplitMix64::new(seed))));
    struct Restore(Option<crate::rng::SplitMix64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            SEEDED.with(|g| *g.borrow_mut() = outer);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// A tensor drawn from `dist`: from the generator of [`with_seed`] when one is
/// installed, else from the backend.
pub fn draw<const D: usize>(shape: [usize; D], dist: Distribution, device: &Device) -> Tensor<D> {
    let sampled = SEEDED.with(|g| {
        let mut g = g.borrow_mut();
        let rng = g.as_mut()?;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = match dist {
            Distribution::Uniform(a, b) => (0..n)
                .map(|_| (a + (b - a) * rng.uniform()) as f32)
                .collect(),
            Distribution::Normal(mean, std) => (0..n)
                .map(|_| {
                    // Box-Muller; 1 - u lies in (0, 1], so the logarithm is finite.
                    let u1 = 1.0 - rng.uniform();
                    let u2 = rng.uniform();
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    (mean + std * z) as f32
                })
                .collect(),
            _ => return None,
        };
        Some(values)
    });
    match sampled {
        Some(values) => Tensor::from_data(burn::tensor::TensorData::new(values, shape), device),
        None => Tensor::random(shape, dist, device),
    }
}

/// `U(-b, b)`; a zero width gives zeros (as PyTorch's `uniform_(-0, 0)`).
fn uniform_sym<const D: usize>(shape: [usize; D], b: f64, device: &Device) -> Tensor<D> {
    if b > 0.0 {
        draw(shape, Distribution::Uniform(-b, b), device)
    } else {
        Tensor::zeros(shape, device)
    }
}

/// `N(mean, std²)`; `std = 0` gives `mean` everywhere.
fn normal<const D: usize>(shape: [usize; D], mean: f64, std: f64, device: &Device) -> Tensor<D> {
    if std > 0.0 {
        draw(shape, Distribution::Normal(mean, std), device)
    } else {
        Tensor::full(shape, mean, device)
    }
}

impl Initializer {
    /// A tensor of `shape` drawn as PyTorch's `nn.init` would (same distribution;
    /// the random stream is burn's, seeded by [`Device::seed`]). An error for a
    /// shape without fans (fewer than 2 axes, or a zero fan) where the method
    /// needs them, a negative or non-finite gain, `std ≤ 0`, or `a ≥ b`.
    pub fn init<const D: usize>(&self, shape: [usize; D], device: &Device) -> Result<Tensor<D>> {
        if !(self.gain.is_finite() && self.gain >= 0.0) {
            return Err(Error::arg(
                "gain",
                format!("got {}, expected a finite number >= 0", self.gain),
            ));
        }
        if !self.mean.is_finite() {
            return Err(Error::arg(
                "mean",
                format!("got {}, expected a finite number", self.mean),
            ));
        }
        let fan = || fans(&shape);
        let positive = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(Error::arg(
                    name,
                    format!("got {v}, expected a finite positive number"),
                ))
            }
        };
        let nonzero = |fan: usize| {
            if fan == 0 {
                Err(Error::arg(
                    "initializer",
                    format!("shape {shape:?} has a zero fan"),
                ))
            } else {
                Ok(fan as f64)
            }
        };
        Ok(match self.method {
            WeightInit::XavierUniform => {
                let (fi, fo) = fan()?;
                let bound = self.gain * (6.0 / nonzero(fi + fo)?).sqrt();
                uniform_sym(shape, bound, device)
            }
            WeightInit::XavierNormal => {
                let (fi, fo) = fan()?;
                let std = self.gain * (2.0 / nonzero(fi + fo)?).sqrt();
                normal(shape, 0.0, std, device)
            }
            WeightInit::KaimingUniform => {
                let (fi, _) = fan()?;
                let bound = self.nonlinearity.gain() * (3.0 / nonzero(fi)?).sqrt();
                uniform_sym(shape, bound, device)
            }
            WeightInit::KaimingNormal => {
                let (fi, _) = fan()?;
                let std = self.nonlinearity.gain() / nonzero(fi)?.sqrt();
                normal(shape, 0.0, std, device)
            }
            WeightInit::Orthogonal => orthogonal(shape, self.gain, device)?,
            WeightInit::Normal => {
                let std = positive("std", self.std)?;
                draw(shape, Distribution::Normal(self.mean, std), device)
            }
            WeightInit::Uniform => {
                if !(self.a.is_finite() && self.b.is_finite() && self.a < self.b) {
                    return Err(Error::arg(
                        "uniform bounds",
                        format!("got a = {}, b = {}, expected finite a < b", self.a, self.b),
                    ));
                }
                draw(shape, Distribution::Uniform(self.a, self.b), device)
            }
            WeightInit::Zeros => Tensor::zeros(shape, device),
        })
    }
}

/// PyTorch's `orthogonal_`: the tensor flattened to `[rows, cols]`
/// (`rows = shape[0]`) is the Q factor of a standard normal matrix (of its
/// transpose when `rows < cols`) with R's diagonal made positive, times `gain`.
fn orthogonal<const D: usize>(shape: [usize; D], gain: f64, device: &Device) -> Result<Tensor<D>> {
    if D < 2 {
        return Err(Error::arg(
            "orthogonal",
            format!("needs a tensor with at least 2 axes, got shape {shape:?}"),
        ));
    }
    let rows = shape[0];
    let numel: usize = shape.iter().product();
    if numel == 0 {
        return Ok(Tensor::zeros(shape, device));
    }
    let cols = numel / rows;
    // Tall matrix m × n (m >= n) whose columns are orthonormalised.
    let (m, n) = if rows < cols {
        (cols, rows)
    } else {
        (rows, cols)
    };
    let g: Vec<f64> = draw::<2>([m, n], Distribution::Normal(0.0, 1.0), device)
        .into_data()
        .convert::<f64>()
        .iter::<f64>()
        .collect();
    let mut q = g; // row-major m × n
    // Modified Gram-Schmidt, twice (numerically orthogonal to rounding); the
    // positive norms are R's diagonal, so Q already carries sign(diag R) = +1.
    for j in 0..n {
        for _pass in 0..2 {
            for i in 0..j {
                let dot: f64 = (0..m).map(|r| q[r * n + i] * q[r * n + j]).sum();
                for r in 0..m {
                    q[r * n + j] -= dot * q[r * n + i];
                }
            }
        }
        let norm: f64 = (0..m)
            .map(|r| q[r * n + j] * q[r * n + j])
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Err(Error::arg(
                "orthogonal",
                "degenerate random matrix, try another seed",
            ));
        }
        for r in 0..m {
            q[r * n + j] /= norm;
        }
    }
    let mut out = vec![0f32; numel];
    for r in 0..rows {
        for c in 0..cols {
            let v = if rows < cols {
                q[c * n + r]
            } else {
                q[r * n + c]
            };
            out[r * cols + c] = (v * gain) as f32;
        }
    }
    Ok(Tensor::from_data(TensorData::new(out, shape), device))
}

/// PyTorch's `trunc_normal_(std, a=-2, b=2)`: normal draws, redrawn where they
/// fall outside `[a, b]` (absolute bounds, as in PyTorch).
pub fn trunc_normal<const D: usize>(
    shape: [usize; D],
    std: f64,
    a: f64,
    b: f64,
    device: &Device,
) -> Tensor<D> {
    let mut t = draw::<D>(shape, Distribution::Normal(0.0, std), device);
    for _ in 0..64 {
        let outside = t.clone().lower_elem(a).bool_or(t.clone().greater_elem(b));
        if !outside.clone().any().into_scalar::<bool>() {
            break;
        }
        let redraw = draw::<D>(shape, Distribution::Normal(0.0, std), device);
        t = t.mask_where(outside, redraw);
    }
    t
}

/// PyTorch's default `nn.Linear` initialisation (`kaiming_uniform_(a=√5)`):
/// weight `[out, in]` and bias `[out]` from `U(-1/√in, 1/√in)`.
pub fn torch_linear_default(d_in: usize, d_out: usize, device: &Device) -> (Tensor<2>, Tensor<1>) {
    let bound = if d_in == 0 {
        0.0
    } else {
        1.0 / (d_in as f64).sqrt()
    };
    (
        uniform_sym([d_out, d_in], bound, device),
        uniform_sym([d_out], bound, device),
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn seeded_draws_have_the_asked_distribution_and_ignore_other_threads() {
        let device = Device::default();
        let n = 40_000;
        let other = std::thread::spawn(|| {
            let d = Device::default();
            for _ in 0..50 {
                let _ = Tensor::<1>::random([1000], Distribution::Uniform(0.0, 1.0), &d);
            }
        });
        let (u, g) = with_seed(3, || {
            (
                draw::<1>([n], Distribution::Uniform(-2.0, 1.0), &device),
                draw::<1>([n], Distribution::Normal(0.5, 2.0), &device),
            )
        });
        other.join().unwrap();
        let u: Vec<f32> = u.into_data().try_to_vec::<f32>().unwrap();
        let g: Vec<f32> = g.into_data().try_to_vec::<f32>().unwrap();
        assert!(u.iter().all(|&x| (-2.0..=1.0).contains(&x)));
        let mean_u = u.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!((mean_u + 0.5).abs() < 0.03, "{mean_u}");
        let mean = g.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = g.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (mean - 0.5).abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
            "{mean} {var}"
        );
        // The same seed gives the same values; without a seed, the backend draws.
        let again: Vec<f32> = with_seed(3, || {
            draw::<1>([n], Distribution::Uniform(-2.0, 1.0), &device)
        })
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
        assert_eq!(again, u);
    }

    use super::*;

    #[test]
    fn fans_follow_pytorch() {
        assert_eq!(fans(&[4, 3, 5]).unwrap(), (15, 20));
        assert_eq!(fans(&[8, 12]).unwrap(), (12, 8));
        assert!(fans(&[3]).is_err());
    }

    #[test]
    fn orthogonal_rows_or_columns_are_orthonormal() {
        let device = Device::default();
        for shape in [[6usize, 4], [4, 6]] {
            let w = orthogonal(shape, 2.0, &device).unwrap();
            let v: Vec<f64> = w.into_data().convert::<f64>().iter::<f64>().collect();
            let (r, c) = (shape[0], shape[1]);
            // The smaller side is orthonormal (times gain²).
            let (outer, inner, stride_o, stride_i) =
                if r < c { (r, c, c, 1) } else { (c, r, 1, c) };
            for a in 0..outer {
                for b in 0..outer {
                    let dot: f64 = (0..inner)
                        .map(|i| v[a * stride_o + i * stride_i] * v[b * stride_o + i * stride_i])
                        .sum();
                    let want = if a == b { 4.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{shape:?} {a} {b}: {dot}");
                }
            }
        }
    }
}
