//! A fast Fourier transform along the token axis built from tensor
//! operations, so that autodiff differentiates it on every backend and long
//! HEALPix sequences (`N = 12·nside² = 3·2^m`) need no `N × N` matrix.
//!
//! The transform is a mixed-radix Cooley–Tukey decimation in frequency whose
//! butterflies are small dense DFTs applied by one matrix product each: with
//! `N = N₁·N₂` (`N₁ ≤ 64` the largest divisor of `N` up to 64) and
//! `n = N₂·n₁ + n₂`, `k = k₁ + N₁·k₂`,
//!
//! ```text
//! X[k₁ + N₁k₂] = Σ_{n₂} W_{N₂}^{n₂k₂} · W_N^{n₂k₁} · Σ_{n₁} W_{N₁}^{n₁k₁} x[N₂n₁ + n₂]
//! ```
//!
//! so one level is a length-`N₁` DFT over the outer digit (a product with an
//! `N₁ × N₁` matrix, broadcast over the rest), a twiddle product, the
//! transform of length `N₂` of every row (recursively) and one transposition
//! of the two output digits. Lengths up to 64, and lengths with no divisor in
//! `2..=64`, are a single dense DFT. The work is `O(N·Σ Nᵢ)` (about `130·N`
//! multiply-adds per channel for `N = 12 288 = 64·64·3`, against `N²` for the
//! dense matrix) in `O(log N)` tensor operations; the matrices are built in
//! float64, so results equal the dense transform to float32 rounding.
//!
//! burn 0.22.1's own FFT (`burn-signal`, the `signal` feature) has autodiff on
//! the CPU backend but takes only power-of-two lengths, and enabling it
//! rebuilds burn's CPU backend with its `fft` feature; this module needs no
//! feature and serves every length.
//!
//! On burn's CPU backend every layer uses the native FFT of
//! [`idx_flow_kernels::fft`] instead (rustfft, any length, its own backward,
//! multithreaded over the rows); [`native`] says where it runs. Elsewhere
//! [`dft_seq`] picks the path: the dense matrix (the layers' original path)
//! below [`FFT_MIN_LEN`] tokens, the factored transform from there on
//! ([`DftPath`] forces any of the three). [`FourierMixing`](super::FourierMixing),
//! [`FourierMixing1d`](super::FourierMixing1d),
//! [`SeparableFourierMixing`](super::SeparableFourierMixing),
//! [`GlobalFilterMixing`](super::GlobalFilterMixing),
//! [`GlobalFilterMixing2d`](super::GlobalFilterMixing2d) and
//! [`AfnoMixing`](super::AfnoMixing) (when it keeps at least
//! `FFT_MIN_LEN / 2` modes; fewer modes are `O(m·N)` as dense rows) take the
//! same choice along the tokens; the hidden axis (small) stays dense.
//! [`SpectransAfnoMixing`](super::SpectransAfnoMixing) keeps its dense rows
//! (`O(modes·N)`, a compatibility layer tied to one length).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::fft::{DftPath, dft_seq};
//!
//! let device = Device::default();
//! // 768 tokens (nside 8), 3 channels: both paths agree to float rounding.
//! let x = Tensor::<3>::random([2, 768, 3], Distribution::Normal(0.0, 1.0), &device);
//! let (fr, fi) = dft_seq(x.clone(), None, false, DftPath::Factored);
//! let (dr, di) = dft_seq(x.clone(), None, false, DftPath::Dense);
//! let err = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
//! assert!(err(fr, dr) < 1e-4 && err(fi, di) < 1e-4);
//! // The inverse undoes it (orthonormal scaling).
//! let (fr, fi) = dft_seq(x.clone(), None, false, DftPath::Auto);
//! let (back, _) = dft_seq(fr, Some(fi), true, DftPath::Auto);
//! assert!(err(back, x) < 1e-4);
//! ```

use std::f64::consts::TAU;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::complex;
use idx_flow_kernels::fft::{self as kernels, FftSpec, fft as native_fft};

/// Whether the layers' Fourier transforms run on the native FFT on `device`
/// (burn's CPU backend, with or without autodiff).
pub fn native(device: &Device) -> bool {
    kernels::available(device)
}

/// `z·(wr + i·wi)` for a complex `z` `[B, N, H, 2]` and `wr`, `wi`
/// broadcasting to `[B, N, H]`.
pub(crate) fn complex_mul(z: Tensor<4>, wr: Tensor<3>, wi: Tensor<3>) -> Tensor<4> {
    let [b, n, h, _] = z.dims();
    if complex::available(&z.device()) && wr.dims() == [1, n, h] && wi.dims() == [1, n, h] {
        // One pass on interleaved pairs (the weights are interleaved once,
        // not the batch).
        let w = Tensor::stack::<4>(vec![wr, wi], 3).reshape([n * h, 2]);
        return complex::scale(z.reshape([b, n * h, 2]), w)
            .expect("pairs and weights of matching shapes")
            .reshape([b, n, h, 2]);
    }
    let zr = z.clone().narrow(3, 0, 1).reshape([b, n, h]);
    let zi = z.narrow(3, 1, 1).reshape([b, n, h]);
    let yr = zr.clone() * wr.clone() - zi.clone() * wi.clone();
    let yi = zr * wi + zi * wr;
    Tensor::stack(vec![yr, yi], 3)
}

/// The `(re, im)` halves of a complex `[B, N, H, 2]`.
pub(crate) fn split_complex(z: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
    let [b, n, h, _] = z.dims();
    (
        z.clone().narrow(3, 0, 1).reshape([b, n, h]),
        z.narrow(3, 1, 1).reshape([b, n, h]),
    )
}

/// Sequence length from which [`dft_seq`] (and so every Fourier mixer) uses
/// the factored transform instead of the dense `N × N` matrix.
///
/// Measured on a 2-core CPU (flex backend, autodiff; forward DFT, inverse
/// DFT and backward of a `[2, N, 16]` input, matrices built included):
///
/// | N | 48 | 96 | 128 | 192 | 384 | 768 | 3 072 | 12 288 | 49 152 |
/// |---|---|---|---|---|---|---|---|---|---|
/// | dense (ms) | 0.20 | 0.52 | 1.3 | 2.8 | 15 | 50 | 1 030 | — | — |
/// | factored (ms) | 0.16 | 0.46 | 0.64 | 0.75 | 1.5 | 2.6 | 8.2 | 50 | 330 |
///
/// Up to 64 tokens both are the same single product; the paths cost about
/// the same near `N = 100` and the factored one is ahead from 128 on, so the
/// spectrans-sized sequences (16 tokens) keep the dense path bit for bit.
pub const FFT_MIN_LEN: usize = 128;

/// Largest radix of one factored level (and longest dense base case).
const MAX_RADIX: usize = 64;

/// Which algorithm computes a DFT along the tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DftPath {
    /// The native FFT where it runs ([`native`]); elsewhere dense below
    /// [`FFT_MIN_LEN`] tokens, factored from there on.
    #[default]
    Auto,
    /// The native FFT (rustfft) where it runs, the factored transform elsewhere.
    Native,
    /// One `N × N` matrix product (`O(N²)`).
    Dense,
    /// The mixed-radix factored transform (`O(N·Σ Nᵢ)`).
    Factored,
}

impl DftPath {
    /// Whether a sequence of `n` tokens takes the factored transform when
    /// the native one does not run.
    pub fn factored(self, n: usize) -> bool {
        match self {
            DftPath::Auto => n >= FFT_MIN_LEN,
            DftPath::Dense => false,
            DftPath::Factored | DftPath::Native => true,
        }
    }

    /// Whether the native FFT computes the transform on `device`.
    pub fn uses_native(self, device: &Device) -> bool {
        matches!(self, DftPath::Auto | DftPath::Native) && native(device)
    }
}

/// The orthonormal DFT along axis 1 of `[B, N, H]` (`re`, optionally `im`;
/// absent means a real input): `(Re, Im)` of `X[k] = Σₙ x[n]·e^{∓2πi·kn/N}/√N`,
/// the minus sign forward, the plus sign for `inverse`. Differentiable.
pub fn dft_seq(
    re: Tensor<3>,
    im: Option<Tensor<3>>,
    inverse: bool,
    path: DftPath,
) -> (Tensor<3>, Tensor<3>) {
    let n = re.dims()[1];
    if path.uses_native(&re.device()) {
        let mut spec = FftSpec::new(1, n).orthonormal();
        if inverse {
            spec = spec.inverse();
        }
        let z = match im {
            None => native_fft::<3, 4>(re, spec.real_input()),
            Some(im) => native_fft::<4, 4>(Tensor::stack(vec![re, im], 3), spec),
        }
        .expect("the native FFT runs on this device and the shapes are built here");
        return split_complex(z);
    }
    if path.factored(n) {
        factored(re, im, inverse)
    } else {
        small_dft(re, im, n, inverse)
    }
}

/// `(cos, sign·sin)` of `2π·(a·b mod n)/n` over `a < rows`, `b < cols`,
/// row-major, times `scale`. The reduction mod `n` keeps angles small, so
/// large `n` loses no accuracy.
fn phases(rows: usize, cols: usize, n: usize, sign: f64, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let mut c = Vec::with_capacity(rows * cols);
    let mut s = Vec::with_capacity(rows * cols);
    for a in 0..rows {
        for b in 0..cols {
            let t = TAU * ((a * b) % n) as f64 / n as f64;
            c.push(t.cos() * scale);
            s.push(sign * t.sin() * scale);
        }
    }
    (c, s)
}

fn tensor<const D: usize>(v: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// The orthonormal DFT of length `n` along axis 1 of `[P, n, M]` by one
/// (broadcast) matrix product: `[C, −σS; σS, C]·[re; im]`, σ = ∓1, with the
/// `im` half dropped for a real input.
fn small_dft(
    re: Tensor<3>,
    im: Option<Tensor<3>>,
    n: usize,
    inverse: bool,
) -> (Tensor<3>, Tensor<3>) {
    let device = re.device();
    // e^{∓iθ} = cos θ ∓ i sin θ: `s` holds ∓sin θ.
    let sign = if inverse { 1.0 } else { -1.0 };
    let (c, s) = phases(n, n, n, sign, 1.0 / (n as f64).sqrt());
    let (shape, data, input) = match im {
        // [C; S]·re: the real input's spectrum.
        None => {
            let mut m = c;
            m.extend(s);
            ([2 * n, n], m, re)
        }
        Some(im) => {
            let mut m = Vec::with_capacity(4 * n * n);
            for k in 0..n {
                m.extend_from_slice(&c[k * n..(k + 1) * n]);
                m.extend(s[k * n..(k + 1) * n].iter().map(|v| -v));
            }
            for k in 0..n {
                m.extend_from_slice(&s[k * n..(k + 1) * n]);
                m.extend_from_slice(&c[k * n..(k + 1) * n]);
            }
            ([2 * n, 2 * n], m, Tensor::cat(vec![re, im], 1))
        }
    };
    let out = tensor(data, [1, shape[0], shape[1]], &device).matmul(input);
    (out.clone().narrow(1, 0, n), out.narrow(1, n, n))
}

/// The largest divisor of `n` in `2..=MAX_RADIX` (below `n`), if any.
fn radix(n: usize) -> Option<usize> {
    if n <= MAX_RADIX {
        return None;
    }
    (2..=MAX_RADIX).rev().find(|r| n.is_multiple_of(*r))
}

/// One decimation-in-frequency level on `[P, N, M]` along axis 1, recursing
/// on the length-`N₂` transforms.
fn factored(re: Tensor<3>, im: Option<Tensor<3>>, inverse: bool) -> (Tensor<3>, Tensor<3>) {
    let [p, n, m] = re.dims();
    let Some(n1) = radix(n) else {
        return small_dft(re, im, n, inverse);
    };
    let n2 = n / n1;
    let device = re.device();
    // x[N₂n₁ + n₂] at [p, n₁, (n₂, m)]: a free reshape.
    let view = |t: Tensor<3>| t.reshape([p, n1, n2 * m]);
    let (ar, ai) = small_dft(view(re), im.map(view), n1, inverse);
    // Twiddles W_N^{n₂k₁} over [k₁, n₂], broadcast over p and m.
    let sign = if inverse { 1.0 } else { -1.0 };
    let (tc, ts) = phases(n1, n2, n, sign, 1.0);
    let tc = tensor(tc, [1, n1, n2, 1], &device);
    let ts = tensor(ts, [1, n1, n2, 1], &device);
    let ar = ar.reshape([p, n1, n2, m]);
    let ai = ai.reshape([p, n1, n2, m]);
    let br = ar.clone() * tc.clone() - ai.clone() * ts.clone();
    let bi = ar * ts + ai * tc;
    // The length-N₂ transform of every (p, k₁) row.
    let (yr, yi) = factored(
        br.reshape([p * n1, n2, m]),
        Some(bi.reshape([p * n1, n2, m])),
        inverse,
    );
    // [p, k₁, k₂, m] → k = k₁ + N₁k₂, i.e. [p, k₂, k₁, m].
    let order = |t: Tensor<3>| t.reshape([p, n1, n2, m]).swap_dims(1, 2).reshape([p, n, m]);
    (order(yr), order(yi))
}
