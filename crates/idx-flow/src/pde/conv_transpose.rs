//! [`PhysicsConvTranspose`]: pdequinox's transposed convolution, which
//! upsamples a coarse field while respecting its boundary condition.
//!
//! It is not the adjoint of [`PhysicsConv`](super::PhysicsConv) (the kernel is
//! not flipped): it is XLA's `conv_general_dilated` with `lhs_dilation = s`,
//! i.e. `s − 1` zeros are inserted between input cells and the result is
//! cross-correlated with `weight` `[C_out, C_in/groups, *k]`. With `p` the
//! "same" padding of [`PhysicsConv`](super::PhysicsConv) and `o` the output padding:
//!
//! - dirichlet: zero padding `(p_l, p_r + o)` around the dilated input;
//! - periodic / neumann: with `t = (d(k−1) − p_l, d(k−1) − p_r + o)`, the
//!   coarse input is first padded by the boundary rule by
//!   `pre = (⌈t_l/s⌉, ⌈t_r/s⌉)` cells, then dilated, then padded with zeros
//!   (or cropped, where negative) by `(p_l − pre_l·s, p_r − pre_r·s + o)`.
//!
//! Either way an axis of `N` cells becomes `(N − 1)·s + 1 + o` cells (`2N` for
//! stride 2 and output padding 1). On a periodic grid a stride-2
//! [`PhysicsConv`](super::PhysicsConv) followed by this layer commutes with
//! shifts by two cells.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow::pde::{BoundaryMode, PhysicsConvTransposeConfig};
//!
//! let device = Device::default();
//! let up = PhysicsConvTransposeConfig::new(2, 8, 4, vec![3], BoundaryMode::Neumann)
//!     .with_stride(vec![2])
//!     .with_output_padding(vec![1])
//!     .init(&device)?;
//! let x = Tensor::<4>::random([2, 8, 16, 12], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(up.try_forward(x)?.dims(), [2, 4, 32, 24]);
//! # Ok::<(), idx_flow::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::boundary::{BoundaryMode, dilate, pad, pad_or_crop};
use super::conv::{conv_nd, grouped_weight_shape, same_padding};
use super::param::NdParam;
use super::{check_input, check_spatial_dims, equinox_conv_params, per_axis};
use crate::error::{Error, Result};
use crate::layers::state_dict::{StateLoader, StateVisitor, TorchState, key};

/// Configuration of a [`PhysicsConvTranspose`] (pdequinox's
/// `PhysicsConvTranspose` arguments). `kernel_size`, `stride`,
/// `output_padding` and `dilation` hold one value (every axis) or one per axis.
#[derive(Config, Debug)]
pub struct PhysicsConvTransposeConfig {
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
    /// Upsampling factor per axis (zeros inserted between input cells). Default: 1.
    #[config(default = "vec![1]")]
    pub stride: Vec<usize>,
    /// Extra output cells on the right of each axis, less than the stride. Default: 0.
    #[config(default = "vec![0]")]
    pub output_padding: Vec<usize>,
    /// Dilation per axis. Default: 1.
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

/// pdequinox's `PhysicsConvTranspose`.
#[derive(Module, Debug)]
pub struct PhysicsConvTranspose {
    /// `[C_out, C_in/groups, *k]` (`weight`), not flipped.
    pub weight: NdParam,
    /// `[C_out, 1, …, 1]` (`bias`), when used.
    pub bias: Option<NdParam>,
    /// Upsampling factor per axis.
    pub stride: Vec<usize>,
    /// Extra output cells per axis.
    pub output_padding: Vec<usize>,
    /// Dilation per axis.
    pub dilation: Vec<usize>,
    /// Channel groups.
    pub groups: usize,
    /// The boundary condition.
    #[module(skip)]
    pub boundary_mode: BoundaryMode,
}

impl PhysicsConvTransposeConfig {
    /// Builds the layer on `device` with pdequinox's initialisation.
    pub fn init(&self, device: &Device) -> Result<PhysicsConvTranspose> {
        let d = self.num_spatial_dims;
        check_spatial_dims(d)?;
        let kernel = per_axis("kernel_size", &self.kernel_size, d, 1)?;
        let stride = per_axis("stride", &self.stride, d, 1)?;
        let output_padding = per_axis("output_padding", &self.output_padding, d, 0)?;
        let dilation = per_axis("dilation", &self.dilation, d, 1)?;
        if let Some(i) = (0..d).find(|&i| output_padding[i] >= stride[i]) {
            return Err(Error::arg(
                "output_padding",
                format!(
                    "got {} on axis {i}, expected less than the stride {}",
                    output_padding[i], stride[i]
                ),
            ));
        }
        let shape =
            grouped_weight_shape(self.in_channels, self.out_channels, self.groups, &kernel)?;
        let (weight, bias) =
            equinox_conv_params(&shape, self.use_bias, self.zero_bias_init, device)?;
        Ok(PhysicsConvTranspose {
            weight,
            bias,
            stride,
            output_padding,
            dilation,
            groups: self.groups,
            boundary_mode: self.boundary_mode,
        })
    }
}

impl PhysicsConvTranspose {
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

    /// pdequinox's `receptive_field`: `((k−1)//2·d, k//2·d)` per axis.
    pub fn receptive_field(&self) -> Vec<(f64, f64)> {
        self.kernel_size()
            .iter()
            .zip(&self.dilation)
            .map(|(&k, &d)| {
                let (l, r) = same_padding(k, d);
                (l as f64, r as f64)
            })
            .collect()
    }

    /// `[B, C_in, *N]` → `[B, C_out, *((N − 1)·s + 1 + o)]`; an error for a
    /// wrong rank (not `D + 2`), channel count or an empty axis.
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        check_input("PhysicsConvTranspose", &x, d, self.in_channels())?;
        let kernel = self.kernel_size();
        let same: Vec<(usize, usize)> = (0..d)
            .map(|i| same_padding(kernel[i], self.dilation[i]))
            .collect();
        let (x, post): (Tensor<R>, Vec<(i64, i64)>) = match self.boundary_mode {
            BoundaryMode::Dirichlet => {
                let post = (0..d)
                    .map(|i| {
                        let (l, r) = same[i];
                        (l as i64, (r + self.output_padding[i]) as i64)
                    })
                    .collect();
                (dilate(x, &self.stride), post)
            }
            mode => {
                let mut pre = Vec::with_capacity(d);
                let mut post = Vec::with_capacity(d);
                for i in 0..d {
                    let (s, o) = (self.stride[i] as i64, self.output_padding[i] as i64);
                    let ext = (self.dilation[i] * (kernel[i] - 1)) as i64;
                    let (pl, pr) = (same[i].0 as i64, same[i].1 as i64);
                    let (tl, tr) = (ext - pl, ext - pr + o);
                    // t ≥ 0 always (p ≤ d(k−1)), so the ceilings are of non-negative numbers.
                    let (bl, br) = ((tl + s - 1) / s, (tr + s - 1) / s);
                    pre.push((bl as usize, br as usize));
                    post.push((pl - bl * s, pr - br * s + o));
                }
                (dilate(pad(x, &pre, mode), &self.stride), post)
            }
        };
        // Negative post padding crops the dilated input; positive is zero padding.
        let crops: Vec<(i64, i64)> = post.iter().map(|&(l, r)| (l.min(0), r.min(0))).collect();
        let x = pad_or_crop(x, &crops, BoundaryMode::Dirichlet);
        let zeros: Vec<(usize, usize)> = post
            .iter()
            .map(|&(l, r)| (l.max(0) as usize, r.max(0) as usize))
            .collect();
        let ones = vec![1; d];
        Ok(conv_nd(
            x,
            &self.weight,
            self.bias.as_ref(),
            &ones,
            &zeros,
            &self.dilation,
            self.groups,
        ))
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        crate::layers::or_panic(self.try_forward(x))
    }
}

impl TorchState for PhysicsConvTranspose {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.weight.visit(&key(prefix, "weight"), v);
        if let Some(b) = &self.bias {
            b.visit(&key(prefix, "bias"), v);
        }
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(PhysicsConvTranspose {
            weight: self.weight.load(&key(prefix, "weight"), l)?,
            bias: match self.bias {
                Some(b) => Some(b.load(&key(prefix, "bias"), l)?),
                None => None,
            },
            ..self
        })
    }
}
