//! [`PhysicsConv`]: pdequinox's N-D convolution with "same" padding by
//! boundary condition, and [`PointwiseLinearConv`] (1×1 channel mixing).
//!
//! `y[b, o, x] = Σ_c Σ_t w[o, c, t] · x̃[b, g(o)·C_in/G + c, s·x + d·t] + bias[o]`,
//! a cross-correlation (no kernel flip) of the input `x̃` padded by the
//! boundary rule with `((k−1)//2·d, ((k−1)//2 + (k−1)%2)·d)` cells on each
//! axis (an even kernel gets the extra cell on the right), then strided: the
//! output has `ceil(N/s)` cells per axis.
//!
//! ```
//! use burn::tensor::{Device, Tensor};
//! use idx_flow_pde::{BoundaryMode, NdParam, PhysicsConvConfig};
//!
//! let device = Device::default();
//! // pdequinox's closed-form check: a ones kernel on a ones field.
//! for (mode, edge) in [
//!     (BoundaryMode::Periodic, 3.0),
//!     (BoundaryMode::Dirichlet, 2.0),
//!     (BoundaryMode::Neumann, 3.0),
//! ] {
//!     let mut conv = PhysicsConvConfig::new(1, 1, 1, vec![3], mode)
//!         .with_use_bias(false)
//!         .init(&device)?;
//!     conv.weight = NdParam::from_values(vec![1.0; 3], &[1, 1, 3], &device)?;
//!     let y = conv.try_forward(Tensor::<3>::ones([1, 1, 8], &device))?;
//!     let y = y.to_data().to_vec::<f32>().unwrap();
//!     assert_eq!((y[0], y[4], y[7]), (edge, 3.0, edge));
//! }
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::module::{conv1d, conv2d, conv3d};
use burn::tensor::ops::ConvOptions;

use super::boundary::{BoundaryMode, pad};
use super::param::NdParam;
use super::{check_input, check_spatial_dims, equinox_conv_params, per_axis};
use crate::{Error, Result};
use idx_flow_core::check_positive;
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};

/// Configuration of a [`PhysicsConv`] (pdequinox's `PhysicsConv` arguments).
/// `kernel_size`, `stride` and `dilation` hold one value (every axis) or one per axis.
#[derive(Config, Debug)]
pub struct PhysicsConvConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Output channels `C_out`.
    pub out_channels: usize,
    /// Kernel size per axis (at least 1).
    pub kernel_size: Vec<usize>,
    /// How the field continues beyond the grid.
    pub boundary_mode: BoundaryMode,
    /// Stride per axis, applied after the "same" padding. Default: 1.
    #[config(default = "vec![1]")]
    pub stride: Vec<usize>,
    /// Dilation per axis (scales the padding too). Default: 1.
    #[config(default = "vec![1]")]
    pub dilation: Vec<usize>,
    /// Channel groups; divides `C_in` and `C_out`. Default: 1.
    #[config(default = 1)]
    pub groups: usize,
    /// Whether a bias is added. Default: true.
    #[config(default = true)]
    pub use_bias: bool,
    /// Whether the bias starts at zero instead of `U(±1/√fan_in)`. Default: false.
    #[config(default = false)]
    pub zero_bias_init: bool,
}

/// pdequinox's `PhysicsConv`: a "same" convolution whose padding follows the
/// field's boundary condition.
#[derive(Module, Debug)]
pub struct PhysicsConv {
    /// `[C_out, C_in/groups, *k]` (`weight`).
    pub weight: NdParam,
    /// `[C_out, 1, …, 1]` (`bias`), when used.
    pub bias: Option<NdParam>,
    /// Stride per axis.
    pub stride: Vec<usize>,
    /// Dilation per axis.
    pub dilation: Vec<usize>,
    /// Channel groups.
    pub groups: usize,
    /// The boundary condition.
    #[module(skip)]
    pub boundary_mode: BoundaryMode,
}

/// Checks channels and groups; returns the weight shape `[C_out, C_in/g, *k]`.
pub(crate) fn grouped_weight_shape(
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    kernel: &[usize],
) -> Result<Vec<usize>> {
    check_positive("in_channels", in_channels)?;
    check_positive("out_channels", out_channels)?;
    check_positive("groups", groups)?;
    if !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(Error::arg(
            "groups",
            format!(
                "got {groups}, expected a divisor of in_channels ({in_channels}) and out_channels ({out_channels})"
            ),
        ));
    }
    let mut shape = vec![out_channels, in_channels / groups];
    shape.extend_from_slice(kernel);
    Ok(shape)
}

impl PhysicsConvConfig {
    /// Builds the layer on `device` with pdequinox's initialisation.
    pub fn init(&self, device: &Device) -> Result<PhysicsConv> {
        let d = self.num_spatial_dims;
        check_spatial_dims(d)?;
        let kernel = per_axis("kernel_size", &self.kernel_size, d, 1)?;
        let stride = per_axis("stride", &self.stride, d, 1)?;
        let dilation = per_axis("dilation", &self.dilation, d, 1)?;
        let shape =
            grouped_weight_shape(self.in_channels, self.out_channels, self.groups, &kernel)?;
        let (weight, bias) =
            equinox_conv_params(&shape, self.use_bias, self.zero_bias_init, device)?;
        Ok(PhysicsConv {
            weight,
            bias,
            stride,
            dilation,
            groups: self.groups,
            boundary_mode: self.boundary_mode,
        })
    }
}

/// pdequinox's "same" padding of one axis: `((k−1)//2·d, ((k−1)//2 + (k−1)%2)·d)`.
/// A kernel of size 0 (never a valid layer's) needs none.
pub fn same_padding(kernel: usize, dilation: usize) -> (usize, usize) {
    let span = kernel.saturating_sub(1);
    let h = span / 2;
    (h * dilation, (h + span % 2) * dilation)
}

/// A slice as a fixed-size array (the caller knows the length).
pub(crate) fn arr<const N: usize>(v: &[usize]) -> [usize; N] {
    v.try_into()
        .unwrap_or_else(|_| panic!("expected {N} values, got {v:?}"))
}

/// A convolution with a kernel of one cell (no stride, padding or groups):
/// per sample, the `[C_out, C_in]` weight times the `[C_in, Π N]` field, a
/// plain batched matrix product on the input's own layout (burn's
/// convolutions would unfold and refold it). Dilation is moot for one cell.
fn pointwise_conv<const R: usize>(
    x: Tensor<R>,
    weight: &NdParam,
    bias: Option<&NdParam>,
) -> Tensor<R> {
    let xd = x.dims();
    let w = weight.dims();
    let (b, ci, co) = (xd[0], xd[1], w[0]);
    let cells: usize = xd[2..].iter().product();
    let mut y = weight
        .reshaped([co, ci])
        .unsqueeze_dim::<3>(0)
        .matmul(x.reshape([b, ci, cells]));
    if let Some(bias) = bias {
        y = y + bias.reshaped([1, co, 1]);
    }
    let mut yd = xd;
    yd[1] = co;
    y.reshape(yd)
}

/// burn's convolution of matching rank: `x` `[B, C_in, *n]`, `weight`
/// `[C_out, C_in/g, *k]`, zero padding `pads` inside the convolution.
pub(crate) fn conv_nd<const R: usize>(
    x: Tensor<R>,
    weight: &NdParam,
    bias: Option<&NdParam>,
    stride: &[usize],
    pads: &[(usize, usize)],
    dilation: &[usize],
    groups: usize,
) -> Tensor<R> {
    let w = weight.dims();
    if groups == 1
        && w[2..].iter().all(|&k| k == 1)
        && stride.iter().all(|&s| s == 1)
        && pads.iter().all(|&p| p == (0, 0))
    {
        return pointwise_conv(x, weight, bias);
    }
    let bias = bias.map(|b| b.reshaped([w[0]]));
    // burn's conv3d takes symmetric padding only: the excess of the larger
    // side is padded explicitly (zeros).
    let (x, pads): (Tensor<R>, Vec<(usize, usize)>) = if R == 5 {
        let extra: Vec<(usize, usize)> = pads
            .iter()
            .map(|&(l, r)| (l - l.min(r), r - l.min(r)))
            .collect();
        let sym = pads.iter().map(|&(l, r)| (l.min(r), l.min(r))).collect();
        (pad(x, &extra, BoundaryMode::Dirichlet), sym)
    } else {
        (x, pads.to_vec())
    };
    let xd = x.dims();
    let pads1 = |i: usize| pads[i];
    match R {
        3 => {
            let o = ConvOptions::new_with_padding([stride[0]], [pads1(0)], [dilation[0]], groups);
            let y = conv1d(
                x.reshape(arr::<3>(&xd)),
                weight.reshaped(arr::<3>(&w)),
                bias,
                o,
            );
            let yd = y.dims();
            y.reshape(arr::<R>(&yd))
        }
        4 => {
            let o = ConvOptions::new_with_padding(
                arr::<2>(stride),
                [pads1(0), pads1(1)],
                arr::<2>(dilation),
                groups,
            );
            let y = conv2d(
                x.reshape(arr::<4>(&xd)),
                weight.reshaped(arr::<4>(&w)),
                bias,
                o,
            );
            let yd = y.dims();
            y.reshape(arr::<R>(&yd))
        }
        5 => {
            let o = ConvOptions::new_with_padding(
                arr::<3>(stride),
                [pads1(0), pads1(1), pads1(2)],
                arr::<3>(dilation),
                groups,
            );
            let y = conv3d(
                x.reshape(arr::<5>(&xd)),
                weight.reshaped(arr::<5>(&w)),
                bias,
                o,
            );
            let yd = y.dims();
            y.reshape(arr::<R>(&yd))
        }
        _ => unreachable!("inputs are checked to have rank 3 to 5"),
    }
}

impl PhysicsConv {
    /// Spatial dimensions `D`.
    pub fn num_spatial_dims(&self) -> usize {
        self.weight.rank() - 2
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1] * self.groups
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Kernel size per axis.
    pub fn kernel_size(&self) -> Vec<usize> {
        self.weight.dims()[2..].to_vec()
    }

    /// The "same" padding `(left, right)` per axis.
    pub fn padding(&self) -> Vec<(usize, usize)> {
        self.kernel_size()
            .iter()
            .zip(&self.dilation)
            .map(|(&k, &d)| same_padding(k, d))
            .collect()
    }

    /// pdequinox's `receptive_field`: how many cells to the left and right of
    /// an output cell reach it, per axis: `((k−1)//2·d, k//2·d)`.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        self.padding()
            .iter()
            .map(|&(l, r)| (l as f64, r as f64))
            .collect()
    }

    /// `[B, C_in, *N]` → `[B, C_out, *ceil(N/stride)]`; an error for a wrong
    /// rank (not `D + 2`), channel count or an empty axis.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        check_input("PhysicsConv", &x, d, self.in_channels())?;
        let pads = self.padding();
        let (x, inner) = match self.boundary_mode {
            BoundaryMode::Dirichlet => (x, pads),
            mode => (pad(x, &pads, mode), vec![(0, 0); d]),
        };
        Ok(conv_nd(
            x,
            &self.weight,
            self.bias.as_ref(),
            &self.stride,
            &inner,
            &self.dilation,
            self.groups,
        ))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

impl TorchState for PhysicsConv {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.weight.visit(&key(prefix, "weight"), v);
        if let Some(b) = &self.bias {
            b.visit(&key(prefix, "bias"), v);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(PhysicsConv {
            weight: self.weight.load(&key(prefix, "weight"), l)?,
            bias: match self.bias {
                Some(b) => Some(b.load(&key(prefix, "bias"), l)?),
                None => None,
            },
            ..self
        })
    }
}

/// Configuration of a [`PointwiseLinearConv`].
#[derive(Config, Debug)]
pub struct PointwiseLinearConvConfig {
    /// Spatial dimensions `D` (1, 2 or 3).
    pub num_spatial_dims: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Whether a bias is added. Default: true.
    #[config(default = true)]
    pub use_bias: bool,
    /// Whether the bias starts at zero instead of `U(±1/√C_in)`. Default: false.
    #[config(default = false)]
    pub zero_bias_init: bool,
}

/// pdequinox's `PointwiseLinearConv`: a 1×1 convolution (the same linear map of
/// the channels at every cell), used to change the channel count.
#[derive(Module, Debug)]
pub struct PointwiseLinearConv {
    /// `[C_out, C_in, 1, …, 1]` (`weight`).
    pub weight: NdParam,
    /// `[C_out, 1, …, 1]` (`bias`), when used.
    pub bias: Option<NdParam>,
}

impl PointwiseLinearConvConfig {
    /// Builds the layer on `device` with Equinox's initialisation (`U(±1/√C_in)`).
    pub fn init(&self, device: &Device) -> Result<PointwiseLinearConv> {
        check_spatial_dims(self.num_spatial_dims)?;
        let kernel = vec![1; self.num_spatial_dims];
        let shape = grouped_weight_shape(self.in_channels, self.out_channels, 1, &kernel)?;
        let (weight, bias) =
            equinox_conv_params(&shape, self.use_bias, self.zero_bias_init, device)?;
        Ok(PointwiseLinearConv { weight, bias })
    }
}

impl PointwiseLinearConv {
    /// Spatial dimensions `D`.
    pub fn num_spatial_dims(&self) -> usize {
        self.weight.rank() - 2
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// pdequinox's `receptive_field`: `(0, 0)` per axis.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        vec![(0.0, 0.0); self.num_spatial_dims()]
    }

    /// `[B, C_in, *N]` → `[B, C_out, *N]`; an error for a wrong rank or channel count.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        check_input("PointwiseLinearConv", &x, d, self.in_channels())?;
        let ones = vec![1; d];
        Ok(conv_nd(
            x,
            &self.weight,
            self.bias.as_ref(),
            &ones,
            &vec![(0, 0); d],
            &ones,
            1,
        ))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
    }
}

impl TorchState for PointwiseLinearConv {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.weight.visit(&key(prefix, "weight"), v);
        if let Some(b) = &self.bias {
            b.visit(&key(prefix, "bias"), v);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(PointwiseLinearConv {
            weight: self.weight.load(&key(prefix, "weight"), l)?,
            bias: match self.bias {
                Some(b) => Some(b.load(&key(prefix, "bias"), l)?),
                None => None,
            },
        })
    }
}
