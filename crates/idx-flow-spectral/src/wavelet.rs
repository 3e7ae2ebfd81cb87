//! [`WaveletMixing`]: multi-level discrete wavelet mixing along the sequence
//! (spectrans' `WaveletMixing`, mode "pointwise").
//!
//! Each channel's sequence is decomposed by a `levels`-level DWT with a
//! Daubechies filter and symmetric extension (PyWavelets' `wavedec(mode=
//! "symmetric")`), every sub-band is multiplied by a learned gain per channel
//! (`mixing_weights.approx`, `mixing_weights.detail_0` finest … each
//! `[1, 1, H]`, ones at start), and the inverse DWT (`waverec`), cropped or
//! padded to `N`, plus the input is the output. The DWT reconstructs
//! perfectly, so at initialisation the wavelet path is the identity (the
//! layer returns `2x`, spectrans' residual included).
//!
//! The transform is linear, so `Σ_b g_b[h]·(synthesis_b·analysis_b)` is
//! applied as one `[N, N]` matrix per sub-band (banded matrices built on the
//! host for the input's `N`), instead of spectrans' loop over channels.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::WaveletMixingConfig;
//!
//! let device = Device::default();
//! let wm = WaveletMixingConfig::new(8).with_wavelet("db2".into()).with_levels(2).init(&device)?;
//! let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
//! let y = wm.try_forward(x.clone())?;
//! // Unit gains: perfect reconstruction, plus the residual.
//! let err = (y - x * 2.0).abs().max().into_scalar::<f32>();
//! assert!(err < 1e-4, "{err}");
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use super::transforms::{Dwt, WaveletFilters, to_tensor};
use super::{along_seq, check_tokens, positive};
use crate::{Error, Result};
use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key, tensor_to_vec};

/// Configuration of a [`WaveletMixing`].
#[derive(Config, Debug)]
pub struct WaveletMixingConfig {
    /// Hidden width `H`.
    pub hidden_dim: usize,
    /// Wavelet: `"haar"` or `"db1"` … `"db8"`. Default: db4.
    #[config(default = "String::from(\"db4\")")]
    pub wavelet: String,
    /// Decomposition levels. Default: 3.
    #[config(default = 3)]
    pub levels: usize,
    /// Add the input to the output (spectrans does). Default: true.
    #[config(default = true)]
    pub residual: bool,
}

/// Multi-level DWT mixing with per-sub-band, per-channel gains.
#[derive(Module, Debug)]
pub struct WaveletMixing {
    /// Gains `[1, 1, H]`: approximation first, then detail levels finest first.
    pub gains: Vec<Param<Tensor<3>>>,
    /// The wavelet's filters (buffers `dwt.dec_lo`, `dwt.dec_hi`, `dwt.rec_lo`, `dwt.rec_hi`).
    #[module(skip)]
    pub filters: WaveletFilters,
    /// Whether the input is added.
    pub residual: bool,
}

impl WaveletMixingConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<WaveletMixing> {
        positive("hidden_dim", self.hidden_dim)?;
        positive("levels", self.levels)?;
        let filters = WaveletFilters::named(&self.wavelet)?;
        let gains = (0..=self.levels)
            .map(|_| Param::from_tensor(Tensor::ones([1, 1, self.hidden_dim], device)))
            .collect();
        Ok(WaveletMixing {
            gains,
            filters,
            residual: self.residual,
        })
    }
}

impl WaveletMixing {
    /// Hidden width.
    pub fn hidden_dim(&self) -> usize {
        self.gains[0].val().dims()[2]
    }

    /// Decomposition levels.
    pub fn levels(&self) -> usize {
        self.gains.len() - 1
    }

    /// `[B, N, H]` → `[B, N, H]` for any `N ≥ 1`.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [b, n, h] = check_tokens("WaveletMixing", &x, Some(self.hidden_dim()))?;
        let device = x.device();
        let dwt = Dwt::new(&self.filters, self.levels(), n)?;
        let s = dwt.bands.len();
        let ops: Vec<f64> = dwt.band_operators().concat(); // [S·N, N]
        let per_band =
            along_seq(to_tensor(&ops, s * n, n, &device), x.clone()).reshape([b, s, n, h]);
        let gains =
            Tensor::cat(self.gains.iter().map(|g| g.val()).collect(), 1).reshape([1, s, 1, h]);
        let y = (per_band * gains).sum_dim(1).reshape([b, n, h]);
        Ok(if self.residual { y + x } else { y })
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }

    fn filter_buffers(&self, device: &Device) -> [(&'static str, Tensor<1>); 4] {
        let t = |v: &[f64]| {
            let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), device)
        };
        let f = &self.filters;
        [
            ("dwt.dec_lo", t(&f.dec_lo)),
            ("dwt.dec_hi", t(&f.dec_hi)),
            ("dwt.rec_lo", t(&f.rec_lo)),
            ("dwt.rec_hi", t(&f.rec_hi)),
        ]
    }
}

fn gain_name(i: usize) -> String {
    if i == 0 {
        "mixing_weights.approx".into()
    } else {
        format!("mixing_weights.detail_{}", i - 1)
    }
}

impl TorchState for WaveletMixing {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        for (i, g) in self.gains.iter().enumerate() {
            v.param(&key(prefix, &gain_name(i)), g);
        }
        let device = self.gains[0].val().device();
        for (name, t) in self.filter_buffers(&device) {
            v.buffer(&key(prefix, name), &t);
        }
    }

    /// Loads the gains; the filter buffers must equal this layer's wavelet
    /// (to float32 rounding), since the filters come from the wavelet's name.
    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let device = self.gains[0].val().device();
        for (name, ours) in self.filter_buffers(&device) {
            let k = key(prefix, name);
            let theirs = l.buffer(&k, ours.clone())?;
            let (a, _) = tensor_to_vec(ours);
            let (b, _) = tensor_to_vec(theirs);
            if a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-6) {
                return Err(Error::arg(
                    "state dict",
                    format!("'{k}' holds {b:?}, which are not this layer's wavelet filters {a:?}"),
                ));
            }
        }
        let gains = self
            .gains
            .into_iter()
            .enumerate()
            .map(|(i, g)| l.param(&key(prefix, &gain_name(i)), g))
            .collect::<Result<_>>()?;
        Ok(WaveletMixing {
            gains,
            filters: self.filters,
            residual: self.residual,
        })
    }
}
