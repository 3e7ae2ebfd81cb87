//! Parameter-free Fourier token mixing (FNet): [`FourierMixing`] (the real
//! part of the orthonormal 2-D DFT over sequence and hidden axes),
//! [`FourierMixing1d`] (over the sequence only) and [`SeparableFourierMixing`]
//! (the real part taken after each axis).
//!
//! spectrans' `RealFourierMixing` computes `irfft2(rfft2(x))`, the identity,
//! so an FNet built on it mixes nothing; the intended layer is the real part
//! of the 2-D DFT, which is [`FourierMixing`] (for a real input, the rfft and
//! the full FFT give the same real part).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::{FourierMixing, FourierMixing1d};
//!
//! let device = Device::default();
//! let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
//! let y = FourierMixing::new().try_forward(x.clone())?;
//! assert_eq!(y.dims(), [2, 48, 8]);
//! // A constant sequence has only the zero frequency: √N times the value.
//! let ones = Tensor::<3>::ones([1, 4, 1], &device);
//! let dc: Vec<f32> = FourierMixing1d::new().forward(ones).into_data().iter::<f32>().collect();
//! assert!((dc[0] - 2.0).abs() < 1e-6 && dc[1].abs() < 1e-6);
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use idx_flow_kernels::fourier2::real_fft2;

use super::fft::{DftPath, dft_seq, native};
use super::transforms::{dft, to_tensor};
use super::{along_hidden, along_seq, check_tokens};
use crate::Result;
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};
use idx_flow_kernels::fft::{FftSpec, fft as native_fft};

/// `Re(F x)` along `axis` of a real `x`, orthonormal: one native transform.
fn native_real_dft(x: Tensor<3>, axis: usize, n: usize) -> Result<Tensor<3>> {
    let spec = FftSpec::new(axis, n)
        .real_input()
        .real_output()
        .orthonormal();
    native_fft::<3, 3>(x, spec)
}

/// `(cos, −sin)` of the orthonormal DFT of length `n` as `[n, n]` tensors.
pub(crate) fn dft_tensors(n: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let (re, im) = dft(n);
    (to_tensor(&re, n, n, device), to_tensor(&im, n, n, device))
}

/// `C_N·x` = `Re(F_N x)` for a real `x` `[B, N, H]`: the native FFT where
/// it runs; elsewhere the cosine matrix below
/// [`FFT_MIN_LEN`](super::fft::FFT_MIN_LEN) tokens, the factored transform
/// from there on.
fn real_dft_seq(x: Tensor<3>, n: usize) -> Result<Tensor<3>> {
    if native(&x.device()) {
        native_real_dft(x, 1, n)
    } else if DftPath::Auto.factored(n) {
        Ok(dft_seq(x, None, false, DftPath::Auto).0)
    } else {
        Ok(along_seq(dft_tensors(n, &x.device()).0, x))
    }
}

/// FNet's mixing: `Re(F_N · X · F_H)` per sample, `F` the orthonormal DFT
/// (spectrans' `FourierMixing`, torch `fft2(norm="ortho").real`). No parameters.
#[derive(Module, Debug, Default)]
pub struct FourierMixing;

impl FourierMixing {
    /// The layer.
    pub fn new() -> Self {
        Self
    }

    /// `[B, N, H]` → `[B, N, H]`; an empty axis is an error.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [_, n, h] = check_tokens("FourierMixing", &x, None)?;
        let device = x.device();
        if native(&device) {
            // One fused transform, its own adjoint (the backward is the
            // same transform of the gradient).
            return real_fft2(x);
        }
        let (ch, sh) = dft_tensors(h, &device);
        let xh = along_hidden(x, Tensor::cat(vec![ch, sh], 1)); // [B, N, 2H]
        let (a, b) = (xh.clone().narrow(2, 0, h), xh.narrow(2, h, h));
        if DftPath::Auto.factored(n) {
            // Re(F_N (A + iB)) with A + iB = X F_H, by the factored transform.
            return Ok(dft_seq(a, Some(b), false, DftPath::Auto).0);
        }
        let (cn, sn) = dft_tensors(n, &device);
        // Re((C_N + iS_N) X (C_H + iS_H)) = C_N X C_H − S_N X S_H, as one
        // product along the sequence of [C_N, −S_N] and [X C_H; X S_H].
        let stacked = Tensor::cat(vec![a, b], 1);
        Ok(along_seq(Tensor::cat(vec![cn, sn.neg()], 1), stacked))
    }

    /// [`try_forward`](Self::try_forward), panicking on an empty axis.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

/// `Re(F_N · X)`: the orthonormal DFT along the sequence only (spectrans'
/// `FourierMixing1d`). No parameters.
#[derive(Module, Debug, Default)]
pub struct FourierMixing1d;

impl FourierMixing1d {
    /// The layer.
    pub fn new() -> Self {
        Self
    }

    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [_, n, _] = check_tokens("FourierMixing1d", &x, None)?;
        real_dft_seq(x, n)
    }

    /// [`try_forward`](Self::try_forward), panicking on an empty axis.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

/// `Re(F_H-transform of Re(F_N · X))` = `C_N · X · C_H` (spectrans'
/// `SeparableFourierMixing`): the real part is taken after each axis, so
/// unlike [`FourierMixing`] no `S_N X S_H` term appears. Either axis can be
/// switched off.
#[derive(Module, Debug)]
pub struct SeparableFourierMixing {
    /// Transform along the sequence.
    pub mix_sequence: bool,
    /// Transform along the hidden axis.
    pub mix_features: bool,
}

impl Default for SeparableFourierMixing {
    fn default() -> Self {
        Self {
            mix_sequence: true,
            mix_features: true,
        }
    }
}

impl SeparableFourierMixing {
    /// Both axes.
    pub fn new() -> Self {
        Self::default()
    }

    /// `[B, N, H]` → `[B, N, H]`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [_, n, h] = check_tokens("SeparableFourierMixing", &x, None)?;
        let device = x.device();
        let mut y = x;
        if self.mix_sequence {
            y = real_dft_seq(y, n)?;
        }
        if self.mix_features {
            y = if native(&device) {
                native_real_dft(y, 2, h)?
            } else {
                along_hidden(y, dft_tensors(h, &device).0)
            };
        }
        Ok(y)
    }

    /// [`try_forward`](Self::try_forward), panicking on an empty axis.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

macro_rules! stateless {
    ($($t:ty),*) => {$(
        impl TorchState for $t {
            fn visit_state<V: StateVisitor>(&self, _: &str, _: &mut V) {}
            fn load_state(self, _: &str, _: &mut StateLoader<'_>) -> Result<Self> {
                Ok(self)
            }
        }
    )*};
}
stateless!(FourierMixing, FourierMixing1d, SeparableFourierMixing);
