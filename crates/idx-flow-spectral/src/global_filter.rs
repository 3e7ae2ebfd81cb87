//! GFNet's global filter: a learned complex filter multiplies the spectrum of
//! the sequence ([`GlobalFilterMixing`], DFT along the tokens) or of the whole
//! `[N, H]` plane ([`GlobalFilterMixing2d`]), and the real part of the inverse
//! transform is the output (spectrans' `GlobalFilterMixing` and
//! `GlobalFilterMixing2d`).
//!
//! The filter is `act(filter_real) + i·act(filter_imag)` with `act` sigmoid,
//! tanh or the identity, both parts `[L, H]`. An input whose length `N`
//! differs from `L` (another HEALPix resolution) uses the raw filters
//! resampled to `N` by linear interpolation (PyTorch's
//! `interpolate(mode="linear", align_corners=False)`; bilinear over `[N, H]`
//! for the 2-D form) before the activation.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::{FilterActivation, GlobalFilterMixingConfig};
//!
//! let device = Device::default();
//! let gf = GlobalFilterMixingConfig::new(8, 48)
//!     .with_activation(FilterActivation::Tanh)
//!     .init(&device)?;
//! let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(gf.try_forward(x)?.dims(), [2, 48, 8]);
//! // Another resolution (nside 4: 192 pixels) reuses the interpolated filter.
//! let x = Tensor::<3>::random([1, 192, 8], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(gf.try_forward(x)?.dims(), [1, 192, 8]);
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use super::fft::{DftPath, complex_mul, dft_seq, native};
use super::fourier::dft_tensors;
use super::transforms::{linear_interpolation, to_tensor};
use super::{along_hidden, along_seq, check_tokens, positive};
use crate::Result;
use idx_flow_core::init::draw;
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_kernels::fft::{FftSpec, fft as native_fft};
use idx_flow_kernels::pointwise::{Activation as Kernel, activation as fused};

/// The activation applied to each part of the filter.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum FilterActivation {
    /// `1/(1 + e^{−x})` (spectrans' default).
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// The raw values.
    Identity,
}

impl FilterActivation {
    fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            FilterActivation::Sigmoid => fused(x, Kernel::Sigmoid),
            FilterActivation::Tanh => fused(x, Kernel::Tanh),
            FilterActivation::Identity => x,
        }
    }
}

impl std::str::FromStr for FilterActivation {
    type Err = crate::Error;
    /// spectrans' names: sigmoid, tanh, identity.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sigmoid" => Ok(Self::Sigmoid),
            "tanh" => Ok(Self::Tanh),
            "identity" => Ok(Self::Identity),
            _ => Err(crate::Error::arg(
                "activation",
                format!("unknown filter activation '{s}', expected sigmoid, tanh or identity"),
            )),
        }
    }
}

/// Configuration of a [`GlobalFilterMixing`] or [`GlobalFilterMixing2d`].
#[derive(Config, Debug)]
pub struct GlobalFilterMixingConfig {
    /// Hidden width `H`.
    pub hidden_dim: usize,
    /// Sequence length `L` the filter is defined on.
    pub sequence_length: usize,
    /// Activation of the filter parts. Default: sigmoid.
    #[config(default = "FilterActivation::Sigmoid")]
    pub activation: FilterActivation,
    /// Standard deviation of the initial filter values. Default: 0.02.
    #[config(default = 0.02)]
    pub filter_init_std: f64,
}

impl GlobalFilterMixingConfig {
    fn filter(&self, device: &Device) -> Result<(Param<Tensor<2>>, Param<Tensor<2>>)> {
        positive("hidden_dim", self.hidden_dim)?;
        positive("sequence_length", self.sequence_length)?;
        if !(self.filter_init_std.is_finite() && self.filter_init_std >= 0.0) {
            return Err(crate::Error::arg(
                "filter_init_std",
                format!("got {}, expected a finite value >= 0", self.filter_init_std),
            ));
        }
        let shape = [self.sequence_length, self.hidden_dim];
        let dist = Distribution::Normal(0.0, self.filter_init_std);
        Ok((
            Param::from_tensor(draw(shape, dist, device)),
            Param::from_tensor(draw(shape, dist, device)),
        ))
    }

    /// The 1-D form (filter along the sequence).
    pub fn init(&self, device: &Device) -> Result<GlobalFilterMixing> {
        let (filter_real, filter_imag) = self.filter(device)?;
        Ok(GlobalFilterMixing {
            filter_real,
            filter_imag,
            activation: self.activation,
        })
    }

    /// The 2-D form (filter over the `[N, H]` plane).
    pub fn init_2d(&self, device: &Device) -> Result<GlobalFilterMixing2d> {
        let (filter_real, filter_imag) = self.filter(device)?;
        Ok(GlobalFilterMixing2d {
            filter_real,
            filter_imag,
            activation: self.activation,
        })
    }
}

/// GFNet's global filter along the sequence: `Re(F⁻¹(w ⊙ F x))`, `F` the
/// orthonormal DFT over the `N` tokens, `w` `[N, H]` complex.
#[derive(Module, Debug)]
pub struct GlobalFilterMixing {
    /// `[L, H]` (`filter_real`).
    pub filter_real: Param<Tensor<2>>,
    /// `[L, H]` (`filter_imag`).
    pub filter_imag: Param<Tensor<2>>,
    /// Activation of the filter parts.
    #[module(skip)]
    pub activation: FilterActivation,
}

/// A filter part `[L, H]` resampled to `[n, h]` (only the axes that differ).
fn resample(f: Tensor<2>, n: usize, h: usize) -> Tensor<2> {
    let [l, hf] = f.dims();
    let device = f.device();
    let f = if l == n {
        f
    } else {
        to_tensor(&linear_interpolation(l, n), n, l, &device).matmul(f)
    };
    if hf == h {
        f
    } else {
        f.matmul(to_tensor(&linear_interpolation(hf, h), h, hf, &device).transpose())
    }
}

impl GlobalFilterMixing {
    /// Hidden width.
    pub fn hidden_dim(&self) -> usize {
        self.filter_real.val().dims()[1]
    }

    /// The filter's sequence length `L`.
    pub fn sequence_length(&self) -> usize {
        self.filter_real.val().dims()[0]
    }

    /// `[B, N, H]` → `[B, N, H]` for any `N ≥ 1`; `H` must be the filter's.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [_, n, h] = check_tokens("GlobalFilterMixing", &x, Some(self.hidden_dim()))?;
        let wr = self
            .activation
            .apply(resample(self.filter_real.val(), n, h))
            .unsqueeze::<3>();
        let wi = self
            .activation
            .apply(resample(self.filter_imag.val(), n, h))
            .unsqueeze::<3>();
        if native(&x.device()) {
            let spec = FftSpec::new(1, n).orthonormal();
            let z = native_fft::<3, 4>(x, spec.real_input())?;
            let y = complex_mul(z, wr, wi);
            return native_fft::<4, 3>(y, spec.inverse().real_output());
        }
        if DftPath::Auto.factored(n) {
            let (xr, xi) = dft_seq(x, None, false, DftPath::Auto);
            let yr = xr.clone() * wr.clone() - xi.clone() * wi.clone();
            let yi = xi * wr + xr * wi;
            return Ok(dft_seq(yr, Some(yi), true, DftPath::Auto).0);
        }
        let (c, s) = dft_tensors(n, &x.device());
        // Spectrum (C + iS)x in one product, then the filter, then the real
        // part of the inverse, (C − iS)ŷ → C·ŷr + S·ŷi (C, S symmetric).
        let spec = along_seq(Tensor::cat(vec![c.clone(), s.clone()], 0), x);
        let (xr, xi) = (spec.clone().narrow(1, 0, n), spec.narrow(1, n, n));
        let yr = xr.clone() * wr.clone() - xi.clone() * wi.clone();
        let yi = xi * wr + xr * wi;
        Ok(along_seq(
            Tensor::cat(vec![c, s], 1),
            Tensor::cat(vec![yr, yi], 1),
        ))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

/// GFNet's global filter over the `[N, H]` plane: `Re(F₂⁻¹(w ⊙ F₂ X))`, `F₂`
/// the orthonormal 2-D DFT. Inputs whose `N` or `H` differ from the filter's
/// use it bilinearly resampled.
#[derive(Module, Debug)]
pub struct GlobalFilterMixing2d {
    /// `[L, H]` (`filter_real`).
    pub filter_real: Param<Tensor<2>>,
    /// `[L, H]` (`filter_imag`).
    pub filter_imag: Param<Tensor<2>>,
    /// Activation of the filter parts.
    #[module(skip)]
    pub activation: FilterActivation,
}

impl GlobalFilterMixing2d {
    /// `[B, N, H]` → `[B, N, H]` for any `N, H ≥ 1`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [_, n, h] = check_tokens("GlobalFilterMixing2d", &x, None)?;
        let device = x.device();
        let wr = self
            .activation
            .apply(resample(self.filter_real.val(), n, h))
            .unsqueeze::<3>();
        let wi = self
            .activation
            .apply(resample(self.filter_imag.val(), n, h))
            .unsqueeze::<3>();
        if native(&device) {
            let (seq, hid) = (
                FftSpec::new(1, n).orthonormal(),
                FftSpec::new(2, h).orthonormal(),
            );
            let z = native_fft::<3, 4>(x, hid.real_input())?;
            let z = native_fft::<4, 4>(z, seq)?;
            let y = complex_mul(z, wr, wi);
            let y = native_fft::<4, 4>(y, seq.inverse())?;
            return native_fft::<4, 3>(y, hid.inverse().real_output());
        }
        let (ch, sh) = dft_tensors(h, &device);
        // X̂ = (C_N + iS_N) X (C_H + iS_H) with A = X C_H, B = X S_H.
        let ab = along_hidden(x, Tensor::cat(vec![ch.clone(), sh.clone()], 1));
        let (a, b) = (ab.clone().narrow(2, 0, h), ab.narrow(2, h, h));
        let back = Tensor::cat(vec![ch, sh], 0);
        if DftPath::Auto.factored(n) {
            let (xr, xi) = dft_seq(a, Some(b), false, DftPath::Auto);
            let yr = xr.clone() * wr.clone() - xi.clone() * wi.clone();
            let yi = xi * wr + xr * wi;
            let (pr, pi) = dft_seq(yr, Some(yi), true, DftPath::Auto);
            return Ok(along_hidden(Tensor::cat(vec![pr, pi], 2), back));
        }
        let (cn, sn) = dft_tensors(n, &device);
        let xr = along_seq(
            Tensor::cat(vec![cn.clone(), sn.clone().neg()], 1),
            Tensor::cat(vec![a.clone(), b.clone()], 1),
        );
        let xi = along_seq(
            Tensor::cat(vec![sn.clone(), cn.clone()], 1),
            Tensor::cat(vec![a, b], 1),
        );
        let yr = xr.clone() * wr.clone() - xi.clone() * wi.clone();
        let yi = xi * wr + xr * wi;
        // Re((C_N − iS_N) Ŷ (C_H − iS_H)) = P_r C_H + P_i S_H with
        // P_r = C_N Ŷr + S_N Ŷi, P_i = C_N Ŷi − S_N Ŷr.
        let stacked = Tensor::cat(vec![yr, yi], 1);
        let pr = along_seq(
            Tensor::cat(vec![cn.clone(), sn.clone()], 1),
            stacked.clone(),
        );
        let pi = along_seq(Tensor::cat(vec![sn.neg(), cn], 1), stacked);
        Ok(along_hidden(Tensor::cat(vec![pr, pi], 2), back))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

macro_rules! filter_state {
    ($($t:ident),*) => {$(
        impl TorchState for $t {
            fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
                v.param(&key(prefix, "filter_real"), &self.filter_real);
                v.param(&key(prefix, "filter_imag"), &self.filter_imag);
            }

            fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
                Ok($t {
                    filter_real: l.param(&key(prefix, "filter_real"), self.filter_real)?,
                    filter_imag: l.param(&key(prefix, "filter_imag"), self.filter_imag)?,
                    activation: self.activation,
                })
            }
        }
    )*};
}
filter_state!(GlobalFilterMixing, GlobalFilterMixing2d);
