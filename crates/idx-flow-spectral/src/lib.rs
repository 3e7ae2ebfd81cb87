//! Spectral token mixing and hybrid transformer blocks: the layers of the
//! Python package spectrans 0.1.0, with its defects fixed.
//!
//! Every mixer maps a token sequence `[B, N, H]` (batch, tokens — e.g.
//! HEALPix pixels — and hidden channels) to `[B, N, H]` and implements
//! [`TokenMixer`]; the blocks take any [`TokenMixer`], so spectral mixers,
//! idx-flow's [`SpatialSelfAttention`], its [`SpatialConv`] on a graph from a
//! grid to itself (each pixel mixed with its graph neighbours), and the
//! [`Mixer`] enum (any of them, chosen at run time) combine freely.
//!
//! | family | file | types |
//! |---|---|---|
//! | transforms | [`transforms`] | DFT, DCT-II, DST-II, Walsh–Hadamard matrices; multi-level Daubechies [`Dwt`](transforms::Dwt) |
//! | fast DFT | [`fft`] | mixed-radix factored DFT along the tokens ([`fft::dft_seq`]) for long sequences |
//! | Fourier (FNet) | [`fourier`] | [`FourierMixing`], [`FourierMixing1d`], [`SeparableFourierMixing`] |
//! | global filter (GFNet) | [`global_filter`] | [`GlobalFilterMixing`], [`GlobalFilterMixing2d`] |
//! | AFNO | [`afno`] | [`AfnoMixing`] (the paper's), [`SpectransAfnoMixing`] (spectrans') |
//! | random-feature attention | [`spectral_attention`] | [`SpectralAttention`] |
//! | linear spectral transform attention | [`lst`] | [`LstAttention`] |
//! | wavelets | [`wavelet`] | [`WaveletMixing`] |
//! | blocks | [`blocks`] | [`FeedForward`], [`TransformerBlock`] (pre/post-norm), [`ParallelBlock`] |
//! | hybrid blocks | [`hybrid`] | [`AlternatingBlock`], [`AdaptiveBlock`], [`MultiscaleBlock`], [`CascadeBlock`] |
//!
//! # Conventions
//!
//! - **Transforms are matrices; long DFTs are factored.** burn 0.22.1's FFT
//!   (`burn-signal`) takes only power-of-two lengths, which no HEALPix
//!   sequence has; every transform here is an exact matrix built in float64
//!   and applied by matrix products (see [`transforms`]), differentiable on
//!   every backend, for any `N`. A dense DFT along the tokens costs `N²`
//!   (a 49 152² matrix at nside 64), so from [`fft::FFT_MIN_LEN`] (128)
//!   tokens on the Fourier mixers (FNet, GFNet, AFNO) take [`fft`]'s
//!   mixed-radix Cooley–Tukey transform instead: the same DFT factored into
//!   small dense DFTs and twiddles (`O(N·Σ Nᵢ)`, e.g. `N = 12 288 = 64·64·3`),
//!   still plain tensor operations, so autodiff differentiates it on every
//!   backend, equal to the dense path to float32 rounding. Shorter sequences
//!   keep the dense matrix, which is as fast there.
//! - **Names** are spectrans' PyTorch `named_parameters()` / `named_buffers()`
//!   names (`filter_real`, `mlp.0.weight`, `kernel.projection`, `norm1.bias`,
//!   `ffn.fc1.weight` `[out, in]`), so [`TorchState`] loads spectrans weights.
//! - **Errors.** `init` and `try_forward` return [`Error`];
//!   `forward` panics with the same message.
//!
//! # Differences from spectrans 0.1.0
//!
//! - spectrans' `RealFourierMixing` is `irfft2(rfft2(x))`, the identity, so
//!   its default FNet mixes nothing. There is no such layer here: the real
//!   part of the 2-D DFT is [`FourierMixing`].
//! - [`AfnoMixing`] is AFNO as Guibas et al. (2022) define it: a
//!   block-diagonal complex two-layer MLP shared by every retained mode, then
//!   soft-shrinkage. spectrans' `AFNOMixing` flattens all retained modes into
//!   one MLP (parameters grow with the square of the mode count, and the
//!   layer is tied to one sequence length); it is kept as
//!   [`SpectransAfnoMixing`] to load spectrans models.
//! - [`SpectralAttention`] uses positive random features as Performer
//!   (FAVOR+) defines them: `ω ~ N(0, I)` (optionally orthogonal with
//!   Gaussian norms), queries and keys scaled by `d^(−1/4)` so that the
//!   features estimate `exp(q·k/√d)`, and a normaliser that is a sum of
//!   positive terms (computed with a max-shift so that it cannot underflow to
//!   zero). spectrans draws unit-norm directions, omits the `d^(−1/4)`
//!   scaling, and its Gaussian kernel uses signed cosine features, whose
//!   normaliser can be zero or negative. Both spectrans forms are available
//!   for loading its models ([`FeatureScale::One`], [`AttentionKernel::Trigonometric`]).
//! - [`AdaptiveBlock`]'s hard gate uses a straight-through estimator (the
//!   forward pass takes the arg-max layer, the backward pass the softmax's
//!   gradient), so the gate trains; spectrans' arg-max gives it no gradient.
//!   spectrans initialises the gate to zero (uniform weights); here it is
//!   PyTorch's default `Linear` initialisation, so layers differ from the start.
//! - The hybrid blocks have no `norm3` (spectrans creates it and never uses
//!   it); [`CascadeBlock`] with separate norms has no unused `norm1`.
//! - [`WaveletMixing`] applies its per-band gains with one matrix per
//!   sub-band instead of spectrans' per-channel Python loop; results are equal.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_spectral::{
//!     FourierMixing1d, GlobalFilterMixingConfig, Mixer, MultiscaleBlockConfig, TokenMixer,
//!     TransformerBlockConfig,
//! };
//!
//! let device = Device::default();
//! // An FNet block and a GFNet/FNet multiscale block on 48 HEALPix pixels (nside 2).
//! let fnet = TransformerBlockConfig::new(8).init(FourierMixing1d::new(), &device)?;
//! let gf = GlobalFilterMixingConfig::new(8, 48).init(&device)?;
//! let multi = MultiscaleBlockConfig::new(8)
//!     .init(vec![Mixer::from(FourierMixing1d::new()), Mixer::from(gf)], &device)?;
//! let x = Tensor::<3>::random([2, 48, 8], Distribution::Normal(0.0, 1.0), &device);
//! let y = multi.try_forward(fnet.try_forward(x)?)?;
//! assert_eq!(y.dims(), [2, 48, 8]);
//! # Ok::<(), idx_flow_spectral::Error>(())
//! ```

#![warn(missing_docs)]

pub use idx_flow_core::{Error, Result};

pub mod afno;
pub mod blocks;
pub mod fft;
pub mod fourier;
pub mod global_filter;
pub mod hybrid;
pub mod lst;
pub mod spectral_attention;
pub mod transforms;
pub mod wavelet;

pub use afno::{AfnoMixing, AfnoMixingConfig, SpectransAfnoMixing, SpectransAfnoMixingConfig};
pub use blocks::{
    FeedForward, FeedForwardConfig, ParallelBlock, ParallelBlockConfig, TransformerBlock,
    TransformerBlockConfig,
};
pub use fourier::{FourierMixing, FourierMixing1d, SeparableFourierMixing};
pub use global_filter::{
    FilterActivation, GlobalFilterMixing, GlobalFilterMixing2d, GlobalFilterMixingConfig,
};
pub use hybrid::{
    AdaptiveBlock, AdaptiveBlockConfig, AlternatingBlock, AlternatingBlockConfig, CascadeBlock,
    CascadeBlockConfig, Fusion, Gate, MultiscaleBlock, MultiscaleBlockConfig,
};
pub use lst::{LstAttention, LstAttentionConfig, LstTransform};
pub use spectral_attention::{
    AttentionKernel, FeatureScale, SpectralAttention, SpectralAttentionConfig,
};
pub use wavelet::{WaveletMixing, WaveletMixingConfig};

use burn::module::Module;
use burn::tensor::Tensor;

use idx_flow_core::or_panic;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};
use idx_flow_nn::{SpatialConv, SpatialSelfAttention};

/// A token mixer: `[B, N, H]` → `[B, N, H]`, a burn module whose parameters
/// load and save under spectrans' (PyTorch) names.
pub trait TokenMixer: Module + TorchState {
    /// `[B, N, H]` → `[B, N, H]`; an error for an input the layer cannot take
    /// (wrong hidden width, an empty axis, a length the transform does not support).
    fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>>;

    /// [`try_forward`](Self::try_forward), panicking with its error.
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(TokenMixer::try_forward(self, x))
    }
}

macro_rules! token_mixer {
    ($($t:ty),*) => {$(
        impl TokenMixer for $t {
            fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
                // The inherent method (path lookup prefers it over the trait's).
                <$t>::try_forward(self, x)
            }
        }
    )*};
}
token_mixer!(
    FourierMixing,
    FourierMixing1d,
    SeparableFourierMixing,
    GlobalFilterMixing,
    GlobalFilterMixing2d,
    AfnoMixing,
    SpectransAfnoMixing,
    SpectralAttention,
    LstAttention,
    WaveletMixing,
    SpatialSelfAttention
);

/// A graph convolution mixes tokens too, when its graph maps a grid to itself
/// (a same-resolution k-nearest or 3×3 stencil graph: the tokens are the
/// pixels, `N_in = N_out`) and it keeps the width (`C = F`). Any other
/// [`SpatialConv`] is refused with an error naming both shapes.
impl TokenMixer for SpatialConv {
    fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let dims = x.dims();
        let y = SpatialConv::try_forward(self, x)?;
        if y.dims() != dims {
            return Err(Error::Shape {
                context: "SpatialConv as a token mixer (its graph must map the grid to itself, \
                          its filters equal its channels)"
                    .into(),
                expected: format!("output {dims:?}, the input's shape"),
                got: format!("{:?}", y.dims()),
            });
        }
        Ok(y)
    }
}

/// Any of the mixers, chosen at run time: the element type of the blocks that
/// hold several different mixers ([`MultiscaleBlock`], [`CascadeBlock`], …).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Mixer {
    /// [`FourierMixing`].
    Fourier(FourierMixing),
    /// [`FourierMixing1d`].
    Fourier1D(FourierMixing1d),
    /// [`SeparableFourierMixing`].
    SeparableFourier(SeparableFourierMixing),
    /// [`GlobalFilterMixing`].
    GlobalFilter(GlobalFilterMixing),
    /// [`GlobalFilterMixing2d`].
    GlobalFilter2D(GlobalFilterMixing2d),
    /// [`AfnoMixing`].
    Afno(AfnoMixing),
    /// [`SpectransAfnoMixing`].
    SpectransAfno(SpectransAfnoMixing),
    /// [`SpectralAttention`].
    SpectralAttention(SpectralAttention),
    /// [`LstAttention`].
    Lst(LstAttention),
    /// [`WaveletMixing`].
    Wavelet(WaveletMixing),
    /// idx-flow's [`SpatialSelfAttention`] (softmax attention over all tokens).
    SelfAttention(SpatialSelfAttention),
    /// idx-flow's [`SpatialConv`] on a graph from a grid to itself (mixing
    /// each pixel with its graph neighbours).
    GraphConv(SpatialConv),
}

/// Runs `$body` with `$m` bound to the inner mixer.
macro_rules! each_mixer {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Mixer::Fourier($m) => $body,
            Mixer::Fourier1D($m) => $body,
            Mixer::SeparableFourier($m) => $body,
            Mixer::GlobalFilter($m) => $body,
            Mixer::GlobalFilter2D($m) => $body,
            Mixer::Afno($m) => $body,
            Mixer::SpectransAfno($m) => $body,
            Mixer::SpectralAttention($m) => $body,
            Mixer::Lst($m) => $body,
            Mixer::Wavelet($m) => $body,
            Mixer::SelfAttention($m) => $body,
            Mixer::GraphConv($m) => $body,
        }
    };
}

macro_rules! mixer_from {
    ($($v:ident($t:ty)),*) => {$(
        impl From<$t> for Mixer {
            fn from(m: $t) -> Self {
                Mixer::$v(m)
            }
        }
    )*};
}
mixer_from!(
    Fourier(FourierMixing),
    Fourier1D(FourierMixing1d),
    SeparableFourier(SeparableFourierMixing),
    GlobalFilter(GlobalFilterMixing),
    GlobalFilter2D(GlobalFilterMixing2d),
    Afno(AfnoMixing),
    SpectransAfno(SpectransAfnoMixing),
    SpectralAttention(SpectralAttention),
    Lst(LstAttention),
    Wavelet(WaveletMixing),
    SelfAttention(SpatialSelfAttention),
    GraphConv(SpatialConv)
);

impl TokenMixer for Mixer {
    fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        each_mixer!(self, m => TokenMixer::try_forward(m, x))
    }
}

impl Mixer {
    /// `[B, N, H]` → `[B, N, H]` by the inner mixer.
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        TokenMixer::try_forward(self, x)
    }

    /// [`try_forward`](Self::try_forward), panicking with its error.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(TokenMixer::try_forward(self, x))
    }
}

impl TorchState for Mixer {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        each_mixer!(self, m => m.visit_state(prefix, v))
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(match self {
            Mixer::Fourier(m) => Mixer::Fourier(m.load_state(prefix, l)?),
            Mixer::Fourier1D(m) => Mixer::Fourier1D(m.load_state(prefix, l)?),
            Mixer::SeparableFourier(m) => Mixer::SeparableFourier(m.load_state(prefix, l)?),
            Mixer::GlobalFilter(m) => Mixer::GlobalFilter(m.load_state(prefix, l)?),
            Mixer::GlobalFilter2D(m) => Mixer::GlobalFilter2D(m.load_state(prefix, l)?),
            Mixer::Afno(m) => Mixer::Afno(m.load_state(prefix, l)?),
            Mixer::SpectransAfno(m) => Mixer::SpectransAfno(m.load_state(prefix, l)?),
            Mixer::SpectralAttention(m) => Mixer::SpectralAttention(m.load_state(prefix, l)?),
            Mixer::Lst(m) => Mixer::Lst(m.load_state(prefix, l)?),
            Mixer::Wavelet(m) => Mixer::Wavelet(m.load_state(prefix, l)?),
            Mixer::SelfAttention(m) => Mixer::SelfAttention(m.load_state(prefix, l)?),
            Mixer::GraphConv(m) => Mixer::GraphConv(m.load_state(prefix, l)?),
        })
    }
}

/// Checks a token input `[B, N, H]` (every axis non-empty; `H` equal to
/// `hidden` when given) and returns its dims.
pub(crate) fn check_tokens(
    layer: &str,
    x: &Tensor<3>,
    hidden: Option<usize>,
) -> Result<[usize; 3]> {
    let dims = x.dims();
    let bad_hidden = hidden.is_some_and(|h| h != dims[2]);
    if dims.contains(&0) || bad_hidden {
        return Err(Error::Shape {
            context: format!("{layer} input"),
            expected: match hidden {
                Some(h) => format!("[B, N, {h}] with B, N >= 1"),
                None => "[B, N, H] with B, N, H >= 1".into(),
            },
            got: format!("{dims:?}"),
        });
    }
    Ok(dims)
}

/// `m` `[K, N]` applied along the sequence of `x` `[B, N, H]`: `[B, K, H]`.
pub(crate) fn along_seq(m: Tensor<2>, x: Tensor<3>) -> Tensor<3> {
    let [b, n, h] = x.dims();
    let k = m.dims()[0];
    let rows = x.swap_dims(1, 2).reshape([b * h, n]);
    rows.matmul(m.transpose())
        .reshape([b, h, k])
        .swap_dims(1, 2)
}

/// `x` `[B, N, H]` times `m` `[H, K]` along the hidden axis: `[B, N, K]`.
pub(crate) fn along_hidden(x: Tensor<3>, m: Tensor<2>) -> Tensor<3> {
    let [b, n, h] = x.dims();
    let k = m.dims()[1];
    x.reshape([b * n, h]).matmul(m).reshape([b, n, k])
}

/// Checks that a width is at least 1.
pub(crate) fn positive(name: &'static str, v: usize) -> Result<()> {
    idx_flow_core::check_positive(name, v)
}
