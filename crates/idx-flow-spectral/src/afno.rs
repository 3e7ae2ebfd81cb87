//! Adaptive Fourier neural operators as token mixers.
//!
//! [`AfnoMixing`] is AFNO as Guibas et al. (ICLR 2022) define it: the
//! sequence's spectrum (real DFT along the tokens, orthonormal) is kept up to
//! `modes` frequencies; at every kept mode the `H` channels, split into
//! `num_blocks` blocks, pass through a block-diagonal complex two-layer MLP
//! (ReLU between, weights shared by all modes), then soft-shrinkage
//! `S_λ(z) = sign(z)·max(|z| − λ, 0)` on real and imaginary parts; the inverse
//! transform plus the input is the output (the paper's code adds the input
//! inside the filter). Parameters do not depend on the sequence length, so one
//! layer serves every HEALPix resolution.
//!
//! [`SpectransAfnoMixing`] is spectrans' `AFNOMixing`, for its models: a layer
//! norm, zero-padding to `max_sequence_length`, the block `[:modes_seq,
//! :modes_hidden]` of the 2-D real FFT times a complex weight, then ONE MLP
//! over all kept modes flattened (its size grows with the square of the mode
//! count), the inverse transform, cropping and the residual.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::AfnoMixingConfig;
//!
//! let device = Device::default();
//! let afno = AfnoMixingConfig::new(16).with_num_blocks(Some(4)).with_modes(Some(12)).init(&device)?;
//! let x = Tensor::<3>::random([2, 48, 16], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(afno.try_forward(x)?.dims(), [2, 48, 16]);
//! // Two complex block-diagonal layers: 2 × (2·4·4·4 + 2·4·4) parameters.
//! use burn::module::Module;
//! assert_eq!(afno.num_params(), 2 * (2 * 4 * 4 * 4 + 2 * 16));
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor, activation};

use super::fft::{DftPath, FFT_MIN_LEN, dft_seq, native, split_complex};
use super::transforms::{dft_rows, to_tensor};
use super::{along_hidden, along_seq, check_tokens, positive};
use crate::{Error, Result};
use idx_flow_core::init::draw;
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_core::{Initializer, WeightInit};
use idx_flow_kernels::complex;
use idx_flow_kernels::fft::{FftSpec, fft as native_fft};
use idx_flow_kernels::pointwise::{Activation as Kernel, activation as fused};
use idx_flow_nn::{LayerNorm, Linear, LinearConfig};

/// Configuration of an [`AfnoMixing`] (the paper's AFNO).
#[derive(Config, Debug)]
pub struct AfnoMixingConfig {
    /// Hidden width `H` (divisible by `num_blocks`).
    pub hidden_dim: usize,
    /// Blocks of the block-diagonal weights. Default: 8 (1 if `H < 8`).
    #[config(default = "None")]
    pub num_blocks: Option<usize>,
    /// Width factor of the MLP's hidden layer. Default: 1.
    #[config(default = 1)]
    pub hidden_size_factor: usize,
    /// Soft-shrinkage threshold λ. Default: 0.01.
    #[config(default = 0.01)]
    pub sparsity_threshold: f64,
    /// Frequencies kept (the lowest ones, at most `N/2 + 1`); `None` keeps all. Default: None.
    #[config(default = "None")]
    pub modes: Option<usize>,
    /// Standard deviation of the initial weights and biases. Default: 0.02.
    #[config(default = 0.02)]
    pub init_scale: f64,
}

/// AFNO (Guibas et al.): block-diagonal complex MLP per kept mode with soft-shrinkage.
#[derive(Module, Debug)]
pub struct AfnoMixing {
    /// `[2, nb, bs, bs·f]` (real, imaginary) (`w1`).
    pub w1: Param<Tensor<4>>,
    /// `[2, nb, bs·f]` (`b1`).
    pub b1: Param<Tensor<3>>,
    /// `[2, nb, bs·f, bs]` (`w2`).
    pub w2: Param<Tensor<4>>,
    /// `[2, nb, bs]` (`b2`).
    pub b2: Param<Tensor<3>>,
    /// Soft-shrinkage threshold.
    pub sparsity_threshold: f64,
    /// Kept frequencies (`None`: all).
    pub modes: Option<usize>,
}

impl AfnoMixingConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<AfnoMixing> {
        let h = self.hidden_dim;
        positive("hidden_dim", h)?;
        positive("hidden_size_factor", self.hidden_size_factor)?;
        let nb = self.num_blocks.unwrap_or(if h >= 8 { 8 } else { 1 });
        positive("num_blocks", nb)?;
        if !h.is_multiple_of(nb) {
            return Err(Error::arg(
                "num_blocks",
                format!("hidden_dim ({h}) must be divisible by num_blocks ({nb})"),
            ));
        }
        if self.modes == Some(0) {
            return Err(Error::arg("modes", "got 0, expected at least 1"));
        }
        for (name, v) in [
            ("sparsity_threshold", self.sparsity_threshold),
            ("init_scale", self.init_scale),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::arg(name, format!("got {v}, expected >= 0")));
            }
        }
        let (bs, f) = (h / nb, self.hidden_size_factor);
        let dist = Distribution::Normal(0.0, self.init_scale);
        Ok(AfnoMixing {
            w1: Param::from_tensor(draw([2, nb, bs, bs * f], dist, device)),
            b1: Param::from_tensor(draw([2, nb, bs * f], dist, device)),
            w2: Param::from_tensor(draw([2, nb, bs * f, bs], dist, device)),
            b2: Param::from_tensor(draw([2, nb, bs], dist, device)),
            sparsity_threshold: self.sparsity_threshold,
            modes: self.modes,
        })
    }
}

/// `[[re, im], [−im, re]]` of a complex weight `[2, nb, i, o]`: `[nb, 2i, 2o]`,
/// so that `[xr, xi] · W = [Re, Im]` of the complex product.
fn complex_block(w: Tensor<4>) -> Tensor<3> {
    let [_, nb, i, o] = w.dims();
    let re = w.clone().narrow(0, 0, 1).reshape([nb, i, o]);
    let im = w.narrow(0, 1, 1).reshape([nb, i, o]);
    Tensor::cat(
        vec![
            Tensor::cat(vec![re.clone(), im.clone()], 2),
            Tensor::cat(vec![im.neg(), re], 2),
        ],
        1,
    )
}

/// `[2, nb, o]` as `[nb, 1, 2o]` (real then imaginary).
fn complex_bias(b: Tensor<3>) -> Tensor<3> {
    let [_, nb, o] = b.dims();
    Tensor::cat(
        vec![
            b.clone().narrow(0, 0, 1).reshape([nb, 1, o]),
            b.narrow(0, 1, 1).reshape([nb, 1, o]),
        ],
        2,
    )
}

/// `sign(z)·max(|z| − λ, 0)`.
fn soft_shrink<const D: usize>(z: Tensor<D>, lambda: f64) -> Tensor<D> {
    activation::relu(z.clone() - lambda) - activation::relu(z.neg() - lambda)
}

/// Inverse real DFT (orthonormal, length `n`) from the first `m` frequencies:
/// `(IR, II)` `[n, m]` with `x = IR·Re + II·Im` (numpy's `irfft` weights: 1
/// at frequency 0 and `n/2`, 2 elsewhere; imaginary parts of those ignored).
fn inverse_real_dft(n: usize, m: usize) -> (Vec<f64>, Vec<f64>) {
    let (c, s) = dft_rows(n, 0..m);
    let (mut ir, mut ii) = (vec![0.0; n * m], vec![0.0; n * m]);
    for k in 0..m {
        let w = if k == 0 || 2 * k == n { 1.0 } else { 2.0 };
        for j in 0..n {
            ir[j * m + k] = w * c[k * n + j];
            ii[j * m + k] = w * s[k * n + j];
        }
    }
    (ir, ii)
}

impl AfnoMixing {
    /// Hidden width.
    pub fn hidden_dim(&self) -> usize {
        let [_, nb, bs, _] = self.w1.val().dims();
        nb * bs
    }

    /// `[B, N, H]` → `[B, N, H]` for any `N ≥ 1`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [b, n, h] = check_tokens("AfnoMixing", &x, Some(self.hidden_dim()))?;
        let device = x.device();
        let m = self.modes.unwrap_or(usize::MAX).min(n / 2 + 1);
        let [_, nb, bs, _] = self.w1.val().dims();
        // The dense rows cost O(m·N): the factored transform only pays when
        // many modes are kept on a long sequence.
        let on_native = native(&device);
        let factored = !on_native && DftPath::Auto.factored(n) && 2 * m >= FFT_MIN_LEN;
        let spec = if on_native {
            let z = native_fft::<3, 4>(
                x.clone(),
                FftSpec::new(1, n).real_input().keep(m).orthonormal(),
            )?;
            let (zr, zi) = split_complex(z);
            Tensor::cat(vec![zr, zi], 1)
        } else if factored {
            let (xr, xi) = dft_seq(x.clone(), None, false, DftPath::Auto);
            Tensor::cat(vec![xr.narrow(1, 0, m), xi.narrow(1, 0, m)], 1)
        } else {
            let (c, s) = dft_rows(n, 0..m);
            let fwd = Tensor::cat(
                vec![to_tensor(&c, m, n, &device), to_tensor(&s, m, n, &device)],
                0,
            );
            along_seq(fwd, x.clone())
        }; // [B, 2m, H]
        let p = b * m;
        let blocks = |t: Tensor<3>| t.reshape([p, nb, bs]).swap_dims(0, 1); // [nb, P, bs]
        let z = Tensor::cat(
            vec![
                blocks(spec.clone().narrow(1, 0, m)),
                blocks(spec.narrow(1, m, m)),
            ],
            2,
        ); // [nb, P, 2bs]
        let o1 =
            activation::relu(z.matmul(complex_block(self.w1.val())) + complex_bias(self.b1.val()));
        let o2 = o1.matmul(complex_block(self.w2.val())) + complex_bias(self.b2.val());
        let o2 = soft_shrink(o2, self.sparsity_threshold); // [nb, P, 2bs]
        let unblocks = |t: Tensor<3>| t.swap_dims(0, 1).reshape([b, m, h]);
        let yr = unblocks(o2.clone().narrow(2, 0, bs));
        let yi = unblocks(o2.narrow(2, bs, bs));
        if on_native || factored {
            // irfft as the real part of the inverse DFT of the spectrum with
            // the Hermitian half folded in: weight 2 on the modes that stand
            // for a conjugate pair, 1 on frequency 0 (and N/2), zeros above m.
            let w: Vec<f32> = (0..m)
                .map(|k| if k == 0 || 2 * k == n { 1.0 } else { 2.0 })
                .collect();
            let w = Tensor::<1>::from_floats(w.as_slice(), &device).reshape([1, m, 1]);
            if on_native {
                // The first m frequencies, zero-padded to n by the transform.
                let y = Tensor::stack(vec![yr * w.clone(), yi * w], 3);
                let spec = FftSpec::new(1, n).inverse().real_output().orthonormal();
                return Ok(native_fft::<4, 3>(y, spec)? + x);
            }
            let pad = |t: Tensor<3>| {
                Tensor::cat(
                    vec![t * w.clone(), Tensor::zeros([b, n - m, h], &device)],
                    1,
                )
            };
            let (out, _) = dft_seq(pad(yr), Some(pad(yi)), true, DftPath::Auto);
            return Ok(out + x);
        }
        let (ir, ii) = inverse_real_dft(n, m);
        let inv = Tensor::cat(
            vec![to_tensor(&ir, n, m, &device), to_tensor(&ii, n, m, &device)],
            1,
        );
        Ok(along_seq(inv, Tensor::cat(vec![yr, yi], 1)) + x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for AfnoMixing {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        v.param(&key(prefix, "w1"), &self.w1);
        v.param(&key(prefix, "b1"), &self.b1);
        v.param(&key(prefix, "w2"), &self.w2);
        v.param(&key(prefix, "b2"), &self.b2);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(AfnoMixing {
            w1: l.param(&key(prefix, "w1"), self.w1)?,
            b1: l.param(&key(prefix, "b1"), self.b1)?,
            w2: l.param(&key(prefix, "w2"), self.w2)?,
            b2: l.param(&key(prefix, "b2"), self.b2)?,
            ..self
        })
    }
}

/// Configuration of a [`SpectransAfnoMixing`] (spectrans' `AFNOMixing` arguments).
#[derive(Config, Debug)]
pub struct SpectransAfnoMixingConfig {
    /// Hidden width `H`.
    pub hidden_dim: usize,
    /// Longest sequence; shorter inputs are zero-padded to it.
    pub max_sequence_length: usize,
    /// Sequence frequencies kept (at most `max_sequence_length`). Default: `max_sequence_length / 2`.
    #[config(default = "None")]
    pub modes_seq: Option<usize>,
    /// Hidden frequencies kept (at most `H/2 + 1`). Default: `H / 2`.
    #[config(default = "None")]
    pub modes_hidden: Option<usize>,
    /// MLP hidden width over `H`. Default: 2.
    #[config(default = 2.0)]
    pub mlp_ratio: f64,
}

/// spectrans' `AFNOMixing`: norm, one flattened MLP over the kept 2-D modes, residual.
#[derive(Module, Debug)]
pub struct SpectransAfnoMixing {
    /// `[modes_seq, modes_hidden, 2]` complex weight (`fourier_weight`).
    pub fourier_weight: Param<Tensor<3>>,
    /// `mlp.0`: `[hidden, 2·ms·mh]`.
    pub mlp_in: Linear,
    /// `mlp.3`: `[2·ms·mh, hidden]`.
    pub mlp_out: Linear,
    /// `norm` (eps 1e-5).
    pub norm: LayerNorm,
    /// Longest sequence.
    pub max_sequence_length: usize,
}

impl SpectransAfnoMixingConfig {
    /// Builds the layer on `device` (spectrans' initialisation: Xavier-uniform
    /// MLP weights, zero biases, complex weight `N(0, 1)/(ms·mh)`).
    pub fn init(&self, device: &Device) -> Result<SpectransAfnoMixing> {
        let (h, l) = (self.hidden_dim, self.max_sequence_length);
        positive("hidden_dim", h)?;
        positive("max_sequence_length", l)?;
        let ms = self.modes_seq.unwrap_or(l / 2).min(l);
        let mh = self.modes_hidden.unwrap_or(h / 2).min(h / 2 + 1);
        positive("modes_seq", ms)?;
        positive("modes_hidden", mh)?;
        let hidden = (h as f64 * self.mlp_ratio) as usize;
        positive("mlp_ratio × hidden_dim", hidden)?;
        let flat = 2 * ms * mh;
        let xavier = Some(Initializer::new(WeightInit::XavierUniform));
        let scale = 1.0 / (ms * mh) as f64;
        Ok(SpectransAfnoMixing {
            fourier_weight: Param::from_tensor(draw(
                [ms, mh, 2],
                Distribution::Normal(0.0, scale),
                device,
            )),
            mlp_in: LinearConfig::new(flat, hidden)
                .with_initializer(xavier.clone())
                .init(device)?,
            mlp_out: LinearConfig::new(hidden, flat)
                .with_initializer(xavier)
                .init(device)?,
            norm: LayerNorm::new(h, 1e-5, true, device)?,
            max_sequence_length: l,
        })
    }
}

impl SpectransAfnoMixing {
    /// `[B, N, H]` → `[B, N, H]` with `N ≤ max_sequence_length`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let h = self.norm.num_features;
        let [b, n, _] = check_tokens("SpectransAfnoMixing", &x, Some(h))?;
        let lmax = self.max_sequence_length;
        if n > lmax {
            return Err(Error::Shape {
                context: "SpectransAfnoMixing input".into(),
                expected: format!("[B, N <= {lmax}, {h}]"),
                got: format!("{:?}", x.dims()),
            });
        }
        let device = x.device();
        let [ms, mh, _] = self.fourier_weight.val().dims();
        let mut z = self.norm.forward(x.clone());
        if n < lmax {
            z = Tensor::cat(vec![z, Tensor::zeros([b, lmax - n, h], &device)], 1);
        }
        if native(&device) {
            return self.native_forward(x, z, [b, n, h, lmax, ms, mh]);
        }
        // rfft along the hidden axis (first mh frequencies), then the full
        // DFT along the sequence (first ms frequencies).
        let (ch, shh) = dft_rows(h, 0..mh);
        let hid = Tensor::cat(
            vec![
                to_tensor(&ch, mh, h, &device),
                to_tensor(&shh, mh, h, &device),
            ],
            0,
        )
        .transpose();
        let a = along_hidden(z, hid); // [B, L, 2mh]
        let (cn, sn) = dft_rows(lmax, 0..ms);
        let (cn, sn) = (
            to_tensor(&cn, ms, lmax, &device),
            to_tensor(&sn, ms, lmax, &device),
        );
        let ab = Tensor::cat(vec![a.clone().narrow(2, 0, mh), a.narrow(2, mh, mh)], 1);
        let zr = along_seq(
            Tensor::cat(vec![cn.clone(), sn.clone().neg()], 1),
            ab.clone(),
        );
        let zi = along_seq(Tensor::cat(vec![sn.clone(), cn.clone()], 1), ab);
        // Complex weight, then the flattened (ms, mh, re/im) vector through the MLP.
        let w = self.fourier_weight.val();
        let wr = w.clone().narrow(2, 0, 1).reshape([1, ms, mh]);
        let wi = w.narrow(2, 1, 1).reshape([1, ms, mh]);
        let (zr, zi) = (
            zr.clone() * wr.clone() - zi.clone() * wi.clone(),
            zr * wi + zi * wr,
        );
        let flat = Tensor::stack::<4>(vec![zr, zi], 3).reshape([b, 2 * ms * mh]);
        let y = self
            .mlp_out
            .forward(fused(self.mlp_in.forward(flat), Kernel::GeluErf))
            .reshape([b, ms, mh, 2]);
        let yr = y.clone().narrow(3, 0, 1).reshape([b, ms, mh]);
        let yi = y.narrow(3, 1, 1).reshape([b, ms, mh]);
        // Inverse DFT along the sequence: U = (C − iS)ᵀ Y.
        let ur = along_seq(
            Tensor::cat(vec![cn.clone(), sn.clone()], 0).transpose(),
            Tensor::cat(vec![yr.clone(), yi.clone()], 1),
        );
        let ui = along_seq(
            Tensor::cat(vec![cn, sn.neg()], 0).transpose(),
            Tensor::cat(vec![yi, yr], 1),
        );
        // Inverse real DFT along the hidden axis from mh frequencies.
        let (ir, ii) = inverse_real_dft(h, mh);
        let inv = Tensor::cat(
            vec![
                to_tensor(&ir, h, mh, &device).transpose(),
                to_tensor(&ii, h, mh, &device).transpose(),
            ],
            0,
        ); // [2mh, H]
        let out = along_hidden(Tensor::cat(vec![ur, ui], 2), inv); // [B, L, H]
        Ok(out.narrow(1, 0, n) + x)
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }

    /// The same on the native FFT: `z` is the normalised, padded input
    /// `[B, L, H]`, `x` the input for the residual.
    fn native_forward(&self, x: Tensor<3>, z: Tensor<3>, sizes: [usize; 6]) -> Result<Tensor<3>> {
        let [b, n, h, lmax, ms, mh] = sizes;
        let device = x.device();
        let hid = FftSpec::new(2, h).orthonormal();
        let seq = FftSpec::new(1, lmax).orthonormal();
        // rfft along the hidden axis (first mh), the DFT along the sequence (first ms).
        let a = native_fft::<3, 4>(z, hid.real_input().keep(mh))?;
        let spectrum = native_fft::<4, 4>(a, seq.keep(ms))?; // [B, ms, mh, 2]
        // Complex weight, then the flattened (ms, mh, re/im) vector through the MLP.
        let w = self.fourier_weight.val().reshape([ms * mh, 2]);
        let flat = complex::scale(spectrum.reshape([b, ms * mh, 2]), w)?.reshape([b, 2 * ms * mh]);
        let y = self
            .mlp_out
            .forward(fused(self.mlp_in.forward(flat), Kernel::GeluErf))
            .reshape([b, ms, mh, 2]);
        // Inverse DFT along the sequence from ms frequencies, then the
        // inverse real DFT along the hidden axis from mh (numpy's irfft
        // weights: 1 at frequency 0 and H/2, 2 elsewhere).
        let u = native_fft::<4, 4>(y, seq.inverse().keep(lmax))?;
        let weights: Vec<f32> = (0..mh)
            .map(|k| if k == 0 || 2 * k == h { 1.0 } else { 2.0 })
            .collect();
        let weights = Tensor::<1>::from_floats(weights.as_slice(), &device).reshape([1, 1, mh, 1]);
        let out = native_fft::<4, 3>(u * weights, hid.inverse().real_output())?;
        Ok(out.narrow(1, 0, n) + x)
    }
}

impl TorchState for SpectransAfnoMixing {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        v.param(&key(prefix, "fourier_weight"), &self.fourier_weight);
        self.mlp_in.visit_state(&key(prefix, "mlp.0."), v);
        self.mlp_out.visit_state(&key(prefix, "mlp.3."), v);
        self.norm.visit_state(&key(prefix, "norm."), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpectransAfnoMixing {
            fourier_weight: l.param(&key(prefix, "fourier_weight"), self.fourier_weight)?,
            mlp_in: self.mlp_in.load_state(&key(prefix, "mlp.0."), l)?,
            mlp_out: self.mlp_out.load_state(&key(prefix, "mlp.3."), l)?,
            norm: self.norm.load_state(&key(prefix, "norm."), l)?,
            ..self
        })
    }
}
