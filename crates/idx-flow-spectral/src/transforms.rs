//! The transforms behind the mixers, as exact matrices built in float64 on
//! the host and applied by matrix products, so that every mixer is
//! differentiable on every backend and works for any sequence length (HEALPix
//! sequences have `12·nside²` pixels, never a power of two).
//!
//! burn 0.22.1's FFT (`burn-signal`) accepts only power-of-two lengths, so it
//! cannot serve a HEALPix sequence; a DFT by matrices is exact (float
//! rounding only) and costs `O(N²)` per transform, which is cheap for short
//! sequences but not for HEALPix maps (768 tokens at nside 8, 49 152 at
//! nside 64). From [`FFT_MIN_LEN`](super::fft::FFT_MIN_LEN) (128) tokens on,
//! the Fourier mixers therefore apply the DFT along the tokens through
//! [`super::fft`], which factors it into small dense DFT matrices
//! and twiddles (mixed-radix Cooley–Tukey, `O(N·Σ Nᵢ)`); below that the
//! dense [`dft`] matrix is as fast and is used as is. The other transforms
//! here (DCT, DST, Hadamard, DWT) stay dense.
//!
//! | function | matrix | convention |
//! |---|---|---|
//! | [`dft`] | `F[k, n] = e^{−2πi·kn/N}/√N` | orthonormal DFT (numpy/torch `norm="ortho"`), as real and imaginary parts |
//! | [`dct`] | `C[k, n] = s_k·cos(π(2n+1)k/2N)` | orthonormal DCT-II (scipy `dct(type=2, norm="ortho")`) |
//! | [`dst`] | `S[k, n] = s_k·sin(π(2n+1)(k+1)/2N)` | orthonormal DST-II (scipy `dst(type=2, norm="ortho")`) |
//! | [`hadamard`] | `H[k, n] = (−1)^{popcount(k & n)}/√N` | Walsh–Hadamard in natural (Sylvester) order, `N` a power of two |
//! | [`Dwt`] | analysis and synthesis of every sub-band | multi-level DWT with Daubechies filters and symmetric extension (PyWavelets' `"symmetric"` mode) |
//!
//! Matrices are row-major `Vec<f64>` of `[rows, cols]`; [`to_tensor`] makes a
//! float32 tensor of one.
//!
//! ```
//! use idx_flow_spectral::transforms::{dct, hadamard};
//!
//! // Orthonormal: C·Cᵀ = I.
//! let n = 6;
//! let c = dct(n);
//! for i in 0..n {
//!     for j in 0..n {
//!         let dot: f64 = (0..n).map(|k| c[i * n + k] * c[j * n + k]).sum();
//!         assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12);
//!     }
//! }
//! assert!(hadamard(6).is_err()); // not a power of two
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use std::f64::consts::{FRAC_1_SQRT_2, PI, TAU};

use burn::tensor::{Device, Tensor, TensorData};

use crate::{Error, Result};

/// A row-major `[rows, cols]` float64 matrix as a float32 tensor.
pub fn to_tensor(m: &[f64], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let v: Vec<f32> = m.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

/// The orthonormal DFT of length `n`: `(re, im)`, each `[n, n]` with
/// `re[k, j] = cos(2πkj/n)/√n`, `im[k, j] = −sin(2πkj/n)/√n`. Both are symmetric.
pub fn dft(n: usize) -> (Vec<f64>, Vec<f64>) {
    dft_rows(n, 0..n)
}

/// Rows `freqs` of [`dft`]: `[freqs.len(), n]`.
pub fn dft_rows(n: usize, freqs: impl Iterator<Item = usize>) -> (Vec<f64>, Vec<f64>) {
    let s = 1.0 / (n as f64).sqrt();
    let (mut re, mut im) = (Vec::new(), Vec::new());
    for k in freqs {
        for j in 0..n {
            // (k·j) mod n keeps the angle small, so large n loses no accuracy.
            let a = TAU * ((k * j) % n) as f64 / n as f64;
            re.push(a.cos() * s);
            im.push(-a.sin() * s);
        }
    }
    (re, im)
}

/// The orthonormal DCT-II `[n, n]` (rows are frequencies).
pub fn dct(n: usize) -> Vec<f64> {
    let nf = n as f64;
    let mut m = Vec::with_capacity(n * n);
    for k in 0..n {
        let s = if k == 0 {
            (1.0 / nf).sqrt()
        } else {
            (2.0 / nf).sqrt()
        };
        for j in 0..n {
            m.push(s * (PI * (2 * j + 1) as f64 * k as f64 / (2.0 * nf)).cos());
        }
    }
    m
}

/// The orthonormal DST-II `[n, n]` (rows are frequencies `1..=n`).
pub fn dst(n: usize) -> Vec<f64> {
    let nf = n as f64;
    let mut m = Vec::with_capacity(n * n);
    for k in 0..n {
        let s = if k == n - 1 {
            (1.0 / nf).sqrt()
        } else {
            (2.0 / nf).sqrt()
        };
        for j in 0..n {
            m.push(s * (PI * (2 * j + 1) as f64 * (k + 1) as f64 / (2.0 * nf)).sin());
        }
    }
    m
}

/// The normalised Walsh–Hadamard matrix `[n, n]` in natural order; `n` must
/// be a power of two.
pub fn hadamard(n: usize) -> Result<Vec<f64>> {
    if !n.is_power_of_two() {
        return Err(Error::arg(
            "sequence length",
            format!("the Hadamard transform needs a power of two, got {n}"),
        ));
    }
    let s = 1.0 / (n as f64).sqrt();
    Ok((0..n * n)
        .map(|i| {
            let (k, j) = (i / n, i % n);
            if (k & j).count_ones() % 2 == 0 { s } else { -s }
        })
        .collect())
}

/// `[n_out, n_in]`: linear interpolation from `n_in` to `n_out` samples with
/// PyTorch's `interpolate(mode="linear", align_corners=False)` rule (source
/// `(i + ½)·n_in/n_out − ½`, clamped at 0; the upper neighbour clamped at the end).
pub fn linear_interpolation(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    // PyTorch computes the ratio in float32 for float32 inputs.
    let scale = (n_in as f32 / n_out as f32) as f64;
    for i in 0..n_out {
        let src = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let l1 = src - i0 as f64;
        m[i * n_in + i0] += 1.0 - l1;
        m[i * n_in + i1] += l1;
    }
    m
}

/// `[a, b]·[b, c]` for row-major matrices, skipping the zeros of both (the
/// wavelet matrices are banded, so composing them stays cheap).
pub(crate) fn matmul(x: &[f64], y: &[f64], a: usize, b: usize, c: usize) -> Vec<f64> {
    let rows: Vec<Vec<(usize, f64)>> = (0..b)
        .map(|k| {
            (0..c)
                .filter_map(|j| {
                    let v = y[k * c + j];
                    (v != 0.0).then_some((j, v))
                })
                .collect()
        })
        .collect();
    let mut out = vec![0.0; a * c];
    for i in 0..a {
        for (k, row) in rows.iter().enumerate() {
            let v = x[i * b + k];
            if v != 0.0 {
                for &(j, w) in row {
                    out[i * c + j] += v * w;
                }
            }
        }
    }
    out
}

/// The reconstruction low-pass filter (scaling filter, sum √2) of Daubechies
/// wavelet `db{order}` as PyWavelets 1.9 tabulates it (`Wavelet("dbN").rec_lo`).
pub fn daubechies(order: usize) -> Result<Vec<f64>> {
    let taps: &[f64] = match order {
        1 => &[FRAC_1_SQRT_2, FRAC_1_SQRT_2],
        2 => &[
            0.48296291314453416,
            0.8365163037378079,
            0.2241438680420134,
            -0.12940952255126037,
        ],
        3 => &[
            0.33267055295008263,
            0.8068915093110925,
            0.45987750211849154,
            -0.13501102001025458,
            -0.08544127388202666,
            0.03522629188570953,
        ],
        4 => &[
            0.2303778133088965,
            0.7148465705529157,
            0.6308807679298589,
            -0.027983769416859854,
            -0.18703481171909309,
            0.030841381835560764,
            0.0328830116668852,
            -0.010597401785069032,
        ],
        5 => &[
            0.16010239797419293,
            0.6038292697971896,
            0.7243085284377729,
            0.13842814590132074,
            -0.24229488706638203,
            -0.032244869584638375,
            0.07757149384004572,
            -0.006241490212798274,
            -0.012580751999081999,
            0.0033357252854737712,
        ],
        6 => &[
            0.11154074335010947,
            0.49462389039845306,
            0.7511339080210954,
            0.31525035170919763,
            -0.22626469396543983,
            -0.12976686756726194,
            0.09750160558732304,
            0.027522865530305727,
            -0.03158203931748603,
            0.0005538422011614961,
            0.004777257510945511,
            -0.0010773010853084796,
        ],
        7 => &[
            0.07785205408500918,
            0.3965393194819173,
            0.7291320908462351,
            0.4697822874051931,
            -0.14390600392856498,
            -0.22403618499387498,
            0.07130921926683026,
            0.08061260915108308,
            -0.03802993693501441,
            -0.01657454163066688,
            0.01255099855609984,
            0.0004295779729213665,
            -0.0018016407040474908,
            0.00035371379997452024,
        ],
        8 => &[
            0.05441584224310401,
            0.31287159091429995,
            0.6756307362972898,
            0.5853546836542067,
            -0.015829105256349306,
            -0.2840155429615469,
            0.0004724845739132828,
            0.12874742662047847,
            -0.017369301001807547,
            -0.044088253930794755,
            0.013981027917398282,
            0.008746094047405777,
            -0.004870352993451574,
            -0.00039174037337694705,
            0.0006754494064505693,
            -0.00011747678412476953,
        ],
        o => {
            return Err(Error::arg(
                "wavelet",
                format!("db{o} is not tabulated, expected db1 to db8"),
            ));
        }
    };
    Ok(taps.to_vec())
}

/// The four filters of an orthogonal wavelet, in PyWavelets' convention.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveletFilters {
    /// Decomposition low-pass (`rec_lo` reversed).
    pub dec_lo: Vec<f64>,
    /// Decomposition high-pass (`rec_hi` reversed).
    pub dec_hi: Vec<f64>,
    /// Reconstruction low-pass (the scaling filter).
    pub rec_lo: Vec<f64>,
    /// Reconstruction high-pass (`(−1)^k · dec_lo[k]`).
    pub rec_hi: Vec<f64>,
}

impl WaveletFilters {
    /// The filters of `"db1"` … `"db8"` (`"haar"` is `db1`).
    pub fn named(name: &str) -> Result<Self> {
        let order = match name {
            "haar" => 1,
            _ => name
                .strip_prefix("db")
                .and_then(|o| o.parse::<usize>().ok())
                .ok_or_else(|| {
                    Error::arg(
                        "wavelet",
                        format!("unknown wavelet '{name}', expected haar or db1 to db8"),
                    )
                })?,
        };
        let rec_lo = daubechies(order)?;
        let dec_lo: Vec<f64> = rec_lo.iter().rev().copied().collect();
        let rec_hi: Vec<f64> = dec_lo
            .iter()
            .enumerate()
            .map(|(k, &v)| if k % 2 == 0 { v } else { -v })
            .collect();
        let dec_hi = rec_hi.iter().rev().copied().collect();
        Ok(Self {
            dec_lo,
            dec_hi,
            rec_lo,
            rec_hi,
        })
    }

    /// Filter length `L`.
    pub fn len(&self) -> usize {
        self.rec_lo.len()
    }

    /// Whether the filters are empty (never, for a named wavelet).
    pub fn is_empty(&self) -> bool {
        self.rec_lo.is_empty()
    }
}

/// Index of the symmetric (half-sample, edge repeated) extension of a signal
/// of length `n` at position `i` (may be negative or past the end): numpy's
/// `"symmetric"` padding, periodic with period `2n`.
fn symmetric_index(i: isize, n: usize) -> usize {
    let p = 2 * n as isize;
    let m = i.rem_euclid(p) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

/// One analysis step as matrices `[out, n]` (low, high): PyWavelets'
/// `dwt(mode="symmetric")`, `out = ⌊(n + L − 1)/2⌋`.
fn analysis_step(f: &WaveletFilters, n: usize) -> (Vec<f64>, Vec<f64>, usize) {
    let l = f.len();
    let out = (n + l - 1) / 2;
    let (mut lo, mut hi) = (vec![0.0; out * n], vec![0.0; out * n]);
    for k in 0..out {
        // c[k] = Σ_t dec[t] · x̃[2k + 1 − t], x̃ the symmetric extension.
        for t in 0..l {
            let j = symmetric_index(2 * k as isize + 1 - t as isize, n);
            lo[k * n + j] += f.dec_lo[t];
            hi[k * n + j] += f.dec_hi[t];
        }
    }
    (lo, hi, out)
}

/// One synthesis step as matrices `[2m − L + 2, m]` (from low, from high):
/// PyWavelets' `idwt` (the transposed convolution with the reconstruction
/// filters, its first `L − 2` samples dropped).
fn synthesis_step(f: &WaveletFilters, m: usize) -> (Vec<f64>, Vec<f64>, usize) {
    let l = f.len();
    let out = 2 * m + 2 - l;
    let (mut lo, mut hi) = (vec![0.0; out * m], vec![0.0; out * m]);
    for i in 0..out {
        let full = i + l - 2;
        for k in 0..m {
            if full >= 2 * k && full - 2 * k < l {
                lo[i * m + k] += f.rec_lo[full - 2 * k];
                hi[i * m + k] += f.rec_hi[full - 2 * k];
            }
        }
    }
    (lo, hi, out)
}

/// A multi-level 1-D DWT of signals of length `n`, as one analysis matrix per
/// sub-band and the matching synthesis matrices.
///
/// Sub-band 0 is the approximation of the coarsest level, sub-band `1 + l`
/// the detail of level `l` (level 0 the finest). The reconstruction follows
/// PyWavelets' `waverec`: the running approximation is cropped to the next
/// detail's length before each inverse step, and the result cropped (or
/// zero-padded) to `n`. With Daubechies filters, `Σ_b synthesis_b ·
/// analysis_b = I` (perfect reconstruction) for every `n ≥ 1`.
#[derive(Clone, Debug)]
pub struct Dwt {
    /// Signal length.
    pub n: usize,
    /// Per sub-band: `(length, analysis [length, n], synthesis [n, length])`.
    pub bands: Vec<(usize, Vec<f64>, Vec<f64>)>,
}

impl Dwt {
    /// The transform of `levels ≥ 1` levels of `filters` for length `n ≥ 1`.
    pub fn new(filters: &WaveletFilters, levels: usize, n: usize) -> Result<Self> {
        if levels == 0 || n == 0 {
            return Err(Error::arg(
                "levels",
                format!(
                    "a DWT needs levels >= 1 and a non-empty signal, got {levels} levels of {n} samples"
                ),
            ));
        }
        // Analysis: approximation chain A_l [len_l, n].
        let mut approx = identity(n);
        let mut len = n;
        let mut details = Vec::new(); // (len, analysis) per level, finest first
        for _ in 0..levels {
            let (lo, hi, out) = analysis_step(filters, len);
            details.push((out, matmul(&hi, &approx, out, len, n)));
            approx = matmul(&lo, &approx, out, len, n);
            len = out;
        }
        // Synthesis, from the finest level down: `out_map` maps the output of
        // level l's inverse step (length 2m_l − L + 2) to the final signal.
        let taps = filters.len();
        let o0 = 2 * details[0].0 + 2 - taps;
        let mut out_map = crop_matrix(o0, n);
        let mut out_len = o0;
        let mut syn = Vec::with_capacity(levels + 1);
        let mut approx_syn = Vec::new();
        for l in 0..levels {
            let m = details[l].0;
            let (lo, hi, o) = synthesis_step(filters, m);
            debug_assert_eq!(o, out_len);
            syn.push(matmul(&out_map, &hi, n, o, m));
            approx_syn = matmul(&out_map, &lo, n, o, m);
            if l + 1 < levels {
                // The approximation entering level l is the output of level
                // l + 1's inverse step cropped to this level's length.
                let next = 2 * details[l + 1].0 + 2 - taps;
                out_map = matmul(&approx_syn, &crop_matrix(next, m), n, m, next);
                out_len = next;
            }
        }
        let mut bands = vec![(len, approx, approx_syn)];
        for ((m, a), s) in details.into_iter().zip(syn) {
            bands.push((m, a, s));
        }
        Ok(Self { n, bands })
    }

    /// `Σ_b g_b · synthesis_b · analysis_b` `[n, n]`: the whole transform with
    /// one gain per sub-band (all ones: the identity).
    pub fn with_gains(&self, gains: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut out = vec![0.0; n * n];
        for ((len, a, s), g) in self.bands.iter().zip(gains) {
            let m = matmul(s, a, n, *len, n);
            for (o, v) in out.iter_mut().zip(m) {
                *o += g * v;
            }
        }
        out
    }

    /// `synthesis_b · analysis_b` `[n, n]` of every sub-band.
    pub fn band_operators(&self) -> Vec<Vec<f64>> {
        let n = self.n;
        self.bands
            .iter()
            .map(|(len, a, s)| matmul(s, a, n, *len, n))
            .collect()
    }
}

fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

/// `[to, from]`: keep the first `min(to, from)` samples, zeros after.
fn crop_matrix(from: usize, to: usize) -> Vec<f64> {
    let mut m = vec![0.0; to * from];
    for i in 0..to.min(from) {
        m[i * from + i] = 1.0;
    }
    m
}
