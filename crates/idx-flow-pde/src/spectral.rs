//! [`SpectralConv`]: the Fourier layer of a Fourier neural operator (FNO), as
//! pdequinox's `SpectralConv`.
//!
//! The field is transformed by a real FFT over all spatial axes (`rfftn`,
//! unnormalised); of the spectrum only the lowest modes are kept: `m_D` on the
//! last (half-spectrum) axis and `m_a` positive plus `m_a` negative
//! frequencies on every other axis, i.e. `2^(D−1)` corner blocks. Each kept
//! mode mixes the channels with its own complex matrix, everything else is
//! zero, and the inverse real FFT (`irfftn`, with `1/Π N`) returns to the
//! input's grid:
//!
//! `ŷ[b, o, κ] = Σ_c x̂[b, c, κ] · (W_re + i·W_im)[blk(κ), o, c, κ mod block]`.
//!
//! Block `i` covers, on axis `a < D − 1`, the negative frequencies when bit `a`
//! of `i` is set and the non-negative ones otherwise (pdequinox's
//! `generate_modes_slices` order). The transforms are exact DFT matrices
//! restricted to the kept modes (`O(N·m)` per axis, differentiable on every
//! backend); as numpy's `irfft`, the imaginary parts of the zero and Nyquist
//! frequencies of the last axis are ignored.
//!
//! The layer works on any grid at least as large as its modes allow (`2·m_a ≤
//! N_a`, `m_D ≤ N_D/2 + 1`), so one model runs at several resolutions.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::SpectralConvConfig;
//!
//! let device = Device::default();
//! // C_in != C_out works here (pdequinox fails on it).
//! let fourier = SpectralConvConfig::new(2, 3, 5, vec![4, 3]).init(&device)?;
//! assert_eq!(fourier.weights_real.dims(), [2, 5, 3, 4, 3]);
//! let x = Tensor::<4>::random([2, 3, 16, 12], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(fourier.try_forward(x)?.dims(), [2, 5, 16, 12]);
//! // Coarser and finer grids share the weights.
//! let x = Tensor::<4>::random([1, 3, 32, 8], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(fourier.try_forward(x)?.dims(), [1, 5, 32, 8]);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use std::f64::consts::TAU;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use super::conv::arr;
use super::param::NdParam;
use super::{check_input, check_spatial_dims, per_axis};
use crate::{Error, Result};
use idx_flow_core::check_positive;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};
use idx_flow_kernels::fft::{self, FftSpec};

/// Configuration of a [`SpectralConv`] (pdequinox's `SpectralConv` arguments).
#[derive(Config, Debug)]
pub struct SpectralConvConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Output channels `C_out` (need not equal `C_in`).
    pub out_channels: usize,
    /// Modes kept per axis (one value for every axis, or one per axis; at least 1).
    pub num_modes: Vec<usize>,
}

/// pdequinox's `SpectralConv` (FNO layer), for any `C_in` and `C_out`.
#[derive(Module, Debug)]
pub struct SpectralConv {
    /// `[2^(D−1), C_out, C_in, *modes]` (`weights_real`).
    pub weights_real: NdParam,
    /// `[2^(D−1), C_out, C_in, *modes]` (`weights_imag`).
    pub weights_imag: NdParam,
}

impl SpectralConvConfig {
    /// Builds the layer on `device`: weights `N(0, 1)/(C_in·C_out)` (pdequinox's).
    pub fn init(&self, device: &Device) -> Result<SpectralConv> {
        let d = self.num_spatial_dims;
        check_spatial_dims(d)?;
        check_positive("in_channels", self.in_channels)?;
        check_positive("out_channels", self.out_channels)?;
        let modes = per_axis("num_modes", &self.num_modes, d, 1)?;
        let mut shape = vec![1 << (d - 1), self.out_channels, self.in_channels];
        shape.extend_from_slice(&modes);
        let scale = 1.0 / (self.in_channels * self.out_channels) as f64;
        let dist = Distribution::Normal(0.0, scale);
        Ok(SpectralConv {
            weights_real: NdParam::random(&shape, dist, device)?,
            weights_imag: NdParam::random(&shape, dist, device)?,
        })
    }
}

/// A complex field `[pre…, axes…]` kept flat, with its logical shape.
struct Complex {
    re: Tensor<1>,
    im: Option<Tensor<1>>,
    shape: Vec<usize>,
}

/// `t` `[pre, n, post]` (flat) contracted on its middle axis with `m` `[n, k]`,
/// as rows `[pre·post, n]`.
fn rows(t: Tensor<1>, shape: &[usize], axis: usize) -> Tensor<2> {
    let pre: usize = shape[..axis].iter().product();
    let post: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    t.reshape([pre, n, post])
        .swap_dims(1, 2)
        .reshape([pre * post, n])
}

/// Rows `[pre·post, k]` back to the flat `[pre, k, post]`.
fn unrows(t: Tensor<2>, shape: &[usize], axis: usize) -> Tensor<1> {
    let pre: usize = shape[..axis].iter().product();
    let post: usize = shape[axis + 1..].iter().product();
    let k = t.dims()[1];
    t.reshape([pre, post, k])
        .swap_dims(1, 2)
        .reshape([pre * k * post])
}

impl Complex {
    /// Applies the complex matrix `mr + i·mi` (`[n, k]`) along `axis`.
    fn apply(self, axis: usize, mr: Tensor<2>, mi: Tensor<2>) -> Complex {
        let k = mr.dims()[1];
        let mut shape = self.shape.clone();
        let r = rows(self.re, &self.shape, axis);
        let p = r.dims()[0];
        let m = Tensor::cat(vec![mr, mi], 1);
        let (re, im) = match self.im {
            None => {
                let y = r.matmul(m);
                (y.clone().narrow(1, 0, k), y.narrow(1, k, k))
            }
            Some(im) => {
                let i = rows(im, &self.shape, axis);
                let y = Tensor::cat(vec![r, i], 0).matmul(m);
                let (top, bottom) = (y.clone().narrow(0, 0, p), y.narrow(0, p, p));
                (
                    top.clone().narrow(1, 0, k) - bottom.clone().narrow(1, k, k),
                    top.narrow(1, k, k) + bottom.narrow(1, 0, k),
                )
            }
        };
        shape[axis] = k;
        Complex {
            re: unrows(re, &shape, axis),
            im: Some(unrows(im, &shape, axis)),
            shape,
        }
    }

    /// The real part of `(re + i·im) · (ar + i·ai)` along `axis`: `re·ar − im·ai`.
    fn apply_real(self, axis: usize, ar: Tensor<2>, ai: Tensor<2>) -> (Tensor<1>, Vec<usize>) {
        let n = ar.dims()[1];
        let mut shape = self.shape.clone();
        let r = rows(self.re, &self.shape, axis);
        let y = match self.im {
            None => r.matmul(ar),
            Some(im) => {
                let i = rows(im, &self.shape, axis);
                Tensor::cat(vec![r, i], 1).matmul(Tensor::cat(vec![ar, ai.neg()], 0))
            }
        };
        shape[axis] = n;
        (unrows(y, &shape, axis), shape)
    }
}

/// The kept frequencies of an axis of `n` cells with `m` modes: `0..m` on the
/// last axis, `0..m` and `n−m..n` on the others.
fn kept(n: usize, m: usize, last: bool) -> Vec<usize> {
    if last {
        (0..m).collect()
    } else {
        (0..m).chain(n - m..n).collect()
    }
}

fn matrix(v: Vec<f64>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Forward DFT restricted to `freqs`: `[n, K]` of `e^{−2πi f x / n}`.
fn forward_dft(n: usize, freqs: &[usize], device: &Device) -> (Tensor<2>, Tensor<2>) {
    let k = freqs.len();
    let (mut re, mut im) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
    for x in 0..n {
        for &f in freqs {
            let a = TAU * ((f * x) % n) as f64 / n as f64;
            re.push(a.cos());
            im.push(-a.sin());
        }
    }
    (matrix(re, [n, k], device), matrix(im, [n, k], device))
}

/// Inverse DFT from `freqs`: `[K, n]` of `c_f·e^{+2πi f x / n}/n`, with
/// `c_f = 1` for a full (complex) axis and numpy's `irfft` weights for the
/// half-spectrum axis (2, except 1 at frequency 0 and at the Nyquist frequency).
fn inverse_dft(n: usize, freqs: &[usize], half: bool, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let k = freqs.len();
    let (mut re, mut im) = (Vec::with_capacity(n * k), Vec::with_capacity(n * k));
    for &f in freqs {
        let c = if !half || f == 0 || 2 * f == n {
            1.0
        } else {
            2.0
        };
        for x in 0..n {
            let a = TAU * ((f * x) % n) as f64 / n as f64;
            re.push(c * a.cos() / n as f64);
            im.push(c * a.sin() / n as f64);
        }
    }
    (matrix(re, [k, n], device), matrix(im, [k, n], device))
}

impl SpectralConv {
    /// Spatial dimensions `D`.
    pub fn num_spatial_dims(&self) -> usize {
        self.weights_real.rank() - 3
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weights_real.dims()[2]
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weights_real.dims()[1]
    }

    /// Modes kept per axis.
    pub fn num_modes(&self) -> Vec<usize> {
        self.weights_real.dims()[3..].to_vec()
    }

    /// pdequinox's `receptive_field`: infinite on both sides of every axis.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        vec![(f64::INFINITY, f64::INFINITY); self.num_spatial_dims()]
    }

    /// The complex weights of every kept mode, corner blocks placed along the
    /// kept frequencies: `[C_out, C_in, 2m_1, …, 2m_{D−1}, m_D]` (real, imaginary).
    fn full_weights(&self, w: &NdParam) -> Tensor<1> {
        let dims = w.dims();
        let (g, co, ci) = (dims[0], dims[1], dims[2]);
        let modes = &dims[3..];
        let d = modes.len();
        let per: usize = dims[1..].iter().product();
        let all = w.reshaped([g, per]);
        // Blocks as [C_out·C_in, m_1, …] flattened, with their shape.
        let mut shape: Vec<usize> = std::iter::once(co * ci)
            .chain(modes.iter().copied())
            .collect();
        let mut blocks: Vec<Tensor<1>> = (0..g)
            .map(|i| all.clone().narrow(0, i, 1).reshape([per]))
            .collect();
        // Pair the blocks that differ in bit a (the lowest remaining bit),
        // non-negative frequencies first.
        for a in 0..d.saturating_sub(1) {
            let axis = 1 + a;
            let pre: usize = shape[..axis].iter().product();
            let post: usize = shape[axis + 1..].iter().product();
            let m = shape[axis];
            blocks = blocks
                .chunks(2)
                .map(|pair| {
                    let lo = pair[0].clone().reshape([pre, m, post]);
                    let hi = pair[1].clone().reshape([pre, m, post]);
                    Tensor::cat(vec![lo, hi], 1).reshape([pre * 2 * m * post])
                })
                .collect();
            shape[axis] = 2 * m;
        }
        debug_assert_eq!(blocks.len(), 1);
        blocks.pop().expect("one block")
    }

    /// Checks the grid against the modes.
    fn check_modes(&self, spatial: &[usize]) -> Result<()> {
        let modes = self.num_modes();
        let d = modes.len();
        for (a, (&n, &m)) in spatial.iter().zip(&modes).enumerate() {
            let last = a == d - 1;
            let ok = if last { m <= n / 2 + 1 } else { 2 * m <= n };
            if !ok {
                let rule = if last {
                    format!(
                        "{m} modes on the last axis need at least {} cells",
                        2 * m - 2
                    )
                } else {
                    format!(
                        "{m} positive and {m} negative modes need at least {} cells",
                        2 * m
                    )
                };
                return Err(Error::Shape {
                    context: format!("SpectralConv input (spatial axis {a}, {rule})"),
                    expected: format!("a grid allowing modes {modes:?}"),
                    got: format!("spatial shape {spatial:?}"),
                });
            }
        }
        Ok(())
    }

    /// `[B, C_in, *N]` → `[B, C_out, *N]`; an error for a wrong rank (not
    /// `D + 2`), channel count, or a grid too small for the modes.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        let dims = check_input("SpectralConv", &x, d, self.in_channels())?;
        let spatial = &dims[2..];
        self.check_modes(spatial)?;
        if fft::available(&x.device()) {
            self.native_forward(x, &dims)
        } else {
            Ok(self.dense_forward(x, &dims))
        }
    }

    /// [`try_forward`](Self::try_forward) through exact DFT matrices
    /// restricted to the kept modes, on any backend: the path of backends
    /// without the native FFT (the GPU ones), here to compare the two.
    pub fn try_forward_dense<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        let dims = check_input("SpectralConv", &x, d, self.in_channels())?;
        self.check_modes(&dims[2..])?;
        Ok(self.dense_forward(x, &dims))
    }

    /// The restricted-DFT forward of an input that passed the checks.
    fn dense_forward<const R: usize>(&self, x: Tensor<R>, dims: &[usize]) -> Tensor<R> {
        let d = self.num_spatial_dims();
        let spatial = &dims[2..];
        let device = x.device();
        let (b, ci, co) = (dims[0], self.in_channels(), self.out_channels());
        let modes = self.num_modes();

        // rfftn restricted to the kept modes: the last axis first (real input).
        let numel: usize = dims.iter().product();
        let mut shape: Vec<usize> = std::iter::once(b * ci)
            .chain(spatial.iter().copied())
            .collect();
        let mut z = Complex {
            re: x.reshape([numel]),
            im: None,
            shape: shape.clone(),
        };
        let freqs: Vec<Vec<usize>> = (0..d)
            .map(|a| kept(spatial[a], modes[a], a == d - 1))
            .collect();
        for a in (0..d).rev() {
            let (mr, mi) = forward_dft(spatial[a], &freqs[a], &device);
            z = z.apply(1 + a, mr, mi);
        }

        // Per-mode channel mixing: [M, B, C_in] × [M, C_in, C_out], as one real
        // product of [M, B, 2C_in] and [[W_re, W_im], [−W_im, W_re]].
        let kdims: Vec<usize> = freqs.iter().map(Vec::len).collect();
        let nm: usize = kdims.iter().product();
        let spec = |t: Tensor<1>| t.reshape([b, ci, nm]).permute([2, 0, 1]);
        let xr = spec(z.re);
        let xi = spec(z.im.expect("complex after the forward transform"));
        let weight = |w: &NdParam| {
            self.full_weights(w)
                .reshape([co, ci, nm])
                .permute([2, 1, 0])
        };
        let (wr, wi) = (weight(&self.weights_real), weight(&self.weights_imag));
        let w = Tensor::cat(
            vec![
                Tensor::cat(vec![wr.clone(), wi.clone()], 2),
                Tensor::cat(vec![wi.neg(), wr], 2),
            ],
            1,
        );
        let y = Tensor::cat(vec![xr, xi], 2).matmul(w); // [M, B, 2C_out]
        let unspec = |t: Tensor<3>| t.permute([1, 2, 0]).reshape([b * co * nm]);
        shape[0] = b * co;
        for (a, &k) in kdims.iter().enumerate() {
            shape[1 + a] = k;
        }
        let mut z = Complex {
            re: unspec(y.clone().narrow(2, 0, co)),
            im: Some(unspec(y.narrow(2, co, co))),
            shape,
        };

        // irfftn: inverse DFTs on the full axes, then the half-spectrum axis.
        for a in 0..d - 1 {
            let (mr, mi) = inverse_dft(spatial[a], &freqs[a], false, &device);
            z = z.apply(1 + a, mr, mi);
        }
        let (ar, ai) = inverse_dft(spatial[d - 1], &freqs[d - 1], true, &device);
        let (out, _) = z.apply_real(d, ar, ai);
        let mut od = dims.to_vec();
        od[1] = co;
        out.reshape(arr::<R>(&od))
    }

    /// The forward on the native FFT (burn's CPU backend): `rfft` along the
    /// last axis keeping `m_D` values, FFTs along the others keeping the
    /// `m_a` lowest and highest frequencies, the channel mixing on
    /// interleaved `(re, im)` pairs, and back: inverse FFTs from both ends of
    /// the spectrum (zeros between), and the inverse real FFT along the
    /// last axis (numpy's `irfft` weights, `1/Π N`). The same map as the
    /// restricted DFTs, at `O(N log N)` per axis and without their layout
    /// copies; every step is differentiable.
    fn native_forward<const R: usize>(&self, x: Tensor<R>, dims: &[usize]) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        let spatial = &dims[2..];
        let modes = self.num_modes();
        let (b, ci, co) = (dims[0], self.in_channels(), self.out_channels());
        let (n_last, m_last) = (spatial[d - 1], modes[d - 1]);
        let device = x.device();

        // rfft along the last axis: [B·C_in·N_1…N_{D−1}, m_D, 2].
        let rows = dims[..R - 1].iter().product::<usize>();
        let x = x.reshape([rows, n_last]);
        let mut z: Tensor<3> =
            fft::fft::<2, 3>(x, FftSpec::new(1, n_last).real_input().keep(m_last))?;
        // The other axes, last to first, viewed as [pre, N_a, post, 2].
        let mut kdims: Vec<usize> = spatial.to_vec();
        kdims[d - 1] = m_last;
        for a in (0..d - 1).rev() {
            let (n, m) = (spatial[a], modes[a]);
            let pre = b * ci * kdims[..a].iter().product::<usize>();
            let post = kdims[a + 1..].iter().product::<usize>();
            let kept = fft::fft::<4, 4>(
                z.reshape([pre, n, post, 2]),
                FftSpec::new(1, n).keep_ends(2 * m),
            )?;
            kdims[a] = 2 * m;
            z = kept.reshape([pre * 2 * m, post, 2]);
        }

        // Per-mode mixing, Y_m = W_m·X_m with W_m [C_out, C_in] and X_m
        // [C_in, B], as two real batched products of [W_re; W_im] with the
        // real and the imaginary parts. Every rearrangement is a permute of
        // whole axes or a cat along a leading one (burn's CPU backend copies
        // a cat along the short (re, im) axis value by value).
        let nm: usize = kdims.iter().product();
        let parts = z.reshape([b, ci, nm, 2]).permute([3, 2, 1, 0]); // [2, M, C_in, B]
        let xr = parts.clone().narrow(0, 0, 1).reshape([nm, ci, b]);
        let xi = parts.narrow(0, 1, 1).reshape([nm, ci, b]);
        let weight = |w: &NdParam| {
            self.full_weights(w)
                .reshape([co * ci, nm])
                .transpose()
                .reshape([nm, co, ci])
        };
        let w = Tensor::cat(
            vec![weight(&self.weights_real), weight(&self.weights_imag)],
            1,
        ); // [M, 2C_out, C_in]: W_re over W_im
        let (p, q) = (w.clone().matmul(xr), w.matmul(xi)); // [M, 2C_out, B]
        let yr = p.clone().narrow(1, 0, co) - q.clone().narrow(1, co, co);
        let yi = p.narrow(1, co, co) + q.narrow(1, 0, co);
        let y = Tensor::stack::<4>(vec![yr, yi], 0).permute([3, 2, 1, 0]); // [B, C_out, M, 2]

        // Back: the kept frequencies of each full axis into a zero spectrum,
        // inverse FFTs, first axis to last.
        let mut z = y.reshape([b * co, nm, 2]);
        for a in 0..d - 1 {
            let (n, m) = (spatial[a], modes[a]);
            let pre = b * co * spatial[..a].iter().product::<usize>();
            let post = kdims[a + 1..].iter().product::<usize>();
            let kept = z.reshape([pre, 2 * m, post, 2]);
            z = fft::fft::<4, 4>(kept, FftSpec::new(1, n).inverse().input_at_ends())?.reshape([
                pre * n,
                post,
                2,
            ]);
        }
        // numpy's irfft weights (1 at frequency 0 and N/2, 2 elsewhere), then
        // the inverse real FFT with 1/Π N.
        let rows = b * co * spatial[..d - 1].iter().product::<usize>();
        let weights: Vec<f32> = (0..m_last)
            .map(|f| if f == 0 || 2 * f == n_last { 1.0 } else { 2.0 })
            .collect();
        let weights = Tensor::<1>::from_floats(weights.as_slice(), &device).reshape([1, m_last, 1]);
        let scale = 1.0 / spatial.iter().product::<usize>() as f64;
        let out: Tensor<2> = fft::fft::<3, 2>(
            z.reshape([rows, m_last, 2]) * weights,
            FftSpec::new(1, n_last)
                .inverse()
                .real_output()
                .scaled(scale as f32),
        )?;
        let mut od = dims.to_vec();
        od[1] = co;
        Ok(out.reshape(arr::<R>(&od)))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

impl TorchState for SpectralConv {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.weights_real.visit(&key(prefix, "weights_real"), v);
        self.weights_imag.visit(&key(prefix, "weights_imag"), v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpectralConv {
            weights_real: self.weights_real.load(&key(prefix, "weights_real"), l)?,
            weights_imag: self.weights_imag.load(&key(prefix, "weights_imag"), l)?,
        })
    }
}
