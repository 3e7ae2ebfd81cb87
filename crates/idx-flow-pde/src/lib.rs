//! Physics layers on regular grids: the convolutions of the JAX package
//! pdequinox 0.1.2, batched, as burn modules.
//!
//! Fields live on regular 1-, 2- or 3-D grids and are batched
//! `[B, C, *spatial]` (pdequinox applies its modules to one sample
//! `[C, *spatial]`; here the batch axis comes first). Every layer is built for a
//! number of spatial dimensions `D` (1, 2 or 3, pdequinox's `num_spatial_dims`)
//! and takes inputs of rank `D + 2`; `forward` is generic in the rank and
//! checks it at run time.
//!
//! | layer | file | what it does |
//! |---|---|---|
//! | [`BoundaryMode`], [`pad`] | [`boundary`] | padding by boundary condition: periodic (wrap), dirichlet (zeros), neumann (mirror without the edge value) |
//! | [`PhysicsConv`], [`PointwiseLinearConv`] | [`conv`] | "same" convolution by boundary mode, stride, dilation, groups; 1×1 channel mixing |
//! | [`PhysicsConvTranspose`] | [`conv_transpose`] | pdequinox's transposed convolution (pad the coarse input by the boundary rule, then a dilated convolution) |
//! | [`SpectralConv`] | [`spectral`] | the Fourier layer of an FNO: keep the lowest modes, mix channels per mode, back to the grid |
//! | [`ClassicDoubleConvBlock`], [`ClassicResBlock`], [`ModernResBlock`], [`DilatedResBlock`], [`ClassicSpectralBlock`], [`GroupNorm`] | [`blocks`] | the blocks pdequinox's architectures stack |
//! | [`BlockFactory`], [`PdeBlock`] | [`factory`] | how to build a block for given channels (pdequinox's block factories) |
//! | [`Sequential`] | [`sequential`] | lifting, blocks, projection on one grid |
//! | [`Hierarchical`] | [`hierarchical`] | the UNet skeleton: encoder, bottleneck, decoder with skips over `L` coarser grids |
//! | [`ConvNet`], [`ClassicResNetConfig`], [`ModernResNetConfig`], [`DilatedResNetConfig`], [`ClassicUNetConfig`], [`ModernUNetConfig`], [`ClassicFnoConfig`] | [`arch`] | pdequinox's architectures with its defaults |
//!
//! # Conventions
//!
//! - **Parameters** have pdequinox's shapes and names (its Equinox pytree
//!   paths): `weight` `[C_out, C_in/groups, *k]`, `bias` `[C_out, 1, …, 1]`,
//!   `weights_real`/`weights_imag` `[2^(D−1), C_out, C_in, *modes]`. They are
//!   stored as [`NdParam`] (a parameter of any rank) and saved and loaded by
//!   [`TorchState`](idx_flow_core::TorchState) under those names.
//! - **Initialisation** is pdequinox's (Equinox's `Conv`): weight and bias from
//!   `U(−1/√fan_in, 1/√fan_in)` with `fan_in = C_in/groups · Π k`; spectral
//!   weights `N(0, 1)/(C_in·C_out)`. Draws follow
//!   [`with_seed`](idx_flow_core::init::with_seed) when one is installed.
//! - **Errors.** `init` and `try_forward` return [`Error`] for
//!   every size a user can get wrong (rank, channels, a kernel wider than the
//!   grid allows, stride 0, too many modes, an unknown boundary mode);
//!   `forward` panics with that message.
//! - **Autodiff.** Padding is made of `select`/`cat`, convolutions are burn's,
//!   and the Fourier transforms are exact DFT matrix products, so every layer is
//!   differentiable on every backend.
//!
//! # Differences from pdequinox
//!
//! - [`SpectralConv`] accepts `C_in != C_out`. pdequinox declares its weights
//!   `(2^(D−1), C_in, C_out, *modes)` but its einsum reads axis 1 as the output
//!   channel, so it fails unless the two are equal; here the weights are
//!   `[2^(D−1), C_out, C_in, *modes]`, which is exactly what pdequinox computes
//!   when they are equal.
//! - [`SpectralConv`] refuses mode counts whose corner blocks would overlap
//!   (`2m > N` on an axis other than the last, `m > N/2 + 1` on the last);
//!   pdequinox silently overwrites one block with another there.
//! - [`Hierarchical`] draws every block of an arc independently. pdequinox
//!   hands one random key to all blocks of a level's arc, so the blocks of
//!   equal shape there start with identical parameters (the structure,
//!   counts and computation are the same).
//! - [`Hierarchical`] reports an up-sampling that does not restore the skip's
//!   grid as an [`Error::Shape`] (a custom factory can do that); pdequinox
//!   fails inside its concatenation.
//! - [`ClassicFnoConfig`] has no boundary mode (pdequinox's argument is unused).
//!   pdequinox's `MLP` architecture is not ported.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{BoundaryMode, PhysicsConvConfig, SpectralConvConfig};
//!
//! let device = Device::default();
//! let conv = PhysicsConvConfig::new(2, 3, 8, vec![3], BoundaryMode::Periodic).init(&device)?;
//! let fourier = SpectralConvConfig::new(2, 8, 4, vec![4, 4]).init(&device)?;
//! let x = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
//! let y = fourier.try_forward(conv.try_forward(x)?)?;
//! assert_eq!(y.dims(), [2, 4, 16, 16]);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

#![warn(missing_docs)]

pub use idx_flow_core::{Error, Result};

pub mod arch;
pub mod blocks;
pub mod boundary;
pub mod conv;
pub mod conv_transpose;
pub mod factory;
pub mod hierarchical;
mod param;
pub mod sequential;
pub mod spectral;

pub use arch::{
    ClassicFnoConfig, ClassicResNetConfig, ClassicUNetConfig, ConvNet, ConvNetConfig,
    DilatedResNetConfig, ModernResNetConfig, ModernUNetConfig,
};

pub use blocks::{
    ClassicDoubleConvBlock, ClassicDoubleConvBlockConfig, ClassicResBlock, ClassicResBlockConfig,
    ClassicSpectralBlock, ClassicSpectralBlockConfig, DilatedResBlock, DilatedResBlockConfig,
    GroupNorm, GroupNormConfig, ModernResBlock, ModernResBlockConfig, PdeActivation,
};
pub use boundary::{BoundaryMode, pad, try_pad};
pub use conv::{PhysicsConv, PhysicsConvConfig, PointwiseLinearConv, PointwiseLinearConvConfig};
pub use conv_transpose::{PhysicsConvTranspose, PhysicsConvTransposeConfig};
pub use factory::{BlockFactory, PdeBlock};
pub use hierarchical::{Hierarchical, HierarchicalConfig};
pub use param::NdParam;
pub use sequential::{Sequential, SequentialConfig};
pub use spectral::{SpectralConv, SpectralConvConfig};

use burn::tensor::{Device, Distribution, Tensor};

/// Checks `num_spatial_dims` (1, 2 or 3).
pub(crate) fn check_spatial_dims(d: usize) -> Result<()> {
    if (1..=3).contains(&d) {
        Ok(())
    } else {
        Err(Error::arg(
            "num_spatial_dims",
            format!("got {d}, expected 1, 2 or 3"),
        ))
    }
}

/// A per-axis setting given as one value (every axis) or one value per axis:
/// the `D` values, each at least `min`.
pub fn per_axis(name: &'static str, v: &[usize], d: usize, min: usize) -> Result<Vec<usize>> {
    let out = match v.len() {
        1 => vec![v[0]; d],
        n if n == d => v.to_vec(),
        n => {
            return Err(Error::arg(
                name,
                format!("got {n} values {v:?}, expected 1 or {d} (one per spatial axis)"),
            ));
        }
    };
    if let Some(bad) = out.iter().find(|&&x| x < min) {
        return Err(Error::arg(
            name,
            format!("got {bad} in {v:?}, expected values >= {min}"),
        ));
    }
    Ok(out)
}

/// Checks an input of rank `R` against `[B, channels, *spatial]` with `d`
/// spatial axes (each non-empty); returns its dims.
pub(crate) fn check_input<const R: usize>(
    layer: &str,
    x: &Tensor<R>,
    d: usize,
    channels: usize,
) -> Result<[usize; R]> {
    let dims = x.dims();
    let axes = ["N1", "N2", "N3"];
    let expected = || {
        let mut e = vec!["B".to_string(), channels.to_string()];
        e.extend(axes[..d].iter().map(|s| s.to_string()));
        format!("[{}] (rank {})", e.join(", "), d + 2)
    };
    if R != d + 2 || dims[1] != channels || dims[2..].contains(&0) {
        return Err(Error::Shape {
            context: format!("{layer} input"),
            expected: expected(),
            got: format!("{dims:?}"),
        });
    }
    Ok(dims)
}

/// `U(−lim, lim)` of `shape` (zeros when `lim` is 0), through the seeded
/// initialiser when one is installed.
pub(crate) fn uniform(shape: &[usize], lim: f64, device: &Device) -> Result<NdParam> {
    NdParam::random(shape, Distribution::Uniform(-lim, lim), device)
}

/// Equinox's `Conv` initialisation: weight `[C_out, C_in/g, *k]` and bias
/// `[C_out, 1, …]` from `U(±1/√(C_in/g · Π k))`; the bias is zero with `zero_bias`.
pub(crate) fn equinox_conv_params(
    weight_shape: &[usize],
    bias: bool,
    zero_bias: bool,
    device: &Device,
) -> Result<(NdParam, Option<NdParam>)> {
    let fan_in: usize = weight_shape[1..].iter().product();
    let lim = 1.0 / (fan_in as f64).sqrt();
    let weight = uniform(weight_shape, lim, device)?;
    let d = weight_shape.len() - 2;
    let mut bias_shape = vec![1usize; d + 1];
    bias_shape[0] = weight_shape[0];
    let bias = if !bias {
        None
    } else if zero_bias {
        Some(NdParam::zeros(&bias_shape, device)?)
    } else {
        Some(uniform(&bias_shape, lim, device)?)
    };
    Ok((weight, bias))
}
