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
//! stride 2 and output padding 1). That is the definition; the layer computes
//! it with burn's transposed convolution, which never multiplies the inserted
//! zeros (see [`PhysicsConvTranspose::try_forward`]). On a periodic grid a stride-2
//! [`PhysicsConv`](super::PhysicsConv) followed by this layer commutes with
//! shifts by two cells.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_pde::{BoundaryMode, PhysicsConvTransposeConfig};
//!
//! let device = Device::default();
//! let up = PhysicsConvTransposeConfig::new(2, 8, 4, vec![3], BoundaryMode::Neumann)
//!     .with_stride(vec![2])
//!     .with_output_padding(vec![1])
//!     .init(&device)?;
//! let x = Tensor::<4>::random([2, 8, 16, 12], Distribution::Normal(0.0, 1.0), &device);
//! assert_eq!(up.try_forward(x)?.dims(), [2, 4, 32, 24]);
//! # Ok::<(), idx_flow_pde::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use burn::tensor::module::{conv_transpose1d, conv_transpose2d, conv_transpose3d};
use burn::tensor::ops::ConvTransposeOptions;

use super::boundary::{BoundaryMode, pad, pad_or_crop};
use super::conv::{arr, grouped_weight_shape, same_padding};
use super::param::NdParam;
use super::{check_input, check_spatial_dims, equinox_conv_params, per_axis};
use crate::{Error, Result};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};

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

/// Signed `(left, right)` paddings of one axis (negative: a crop).
type Offsets = (i64, i64);

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

    /// The boundary pre-padding of the coarse input and the zero padding
    /// (negative: crop) of the dilated one, per axis: `pre = 0` and
    /// `post = (p_l, p_r + o)` for dirichlet, the rule of the module docs otherwise.
    fn paddings(&self) -> (Vec<(usize, usize)>, Vec<Offsets>) {
        let kernel = self.kernel_size();
        let mut pre = Vec::with_capacity(kernel.len());
        let mut post = Vec::with_capacity(kernel.len());
        for (i, &k) in kernel.iter().enumerate() {
            let (s, o) = (self.stride[i] as i64, self.output_padding[i] as i64);
            let (pl, pr) = same_padding(k, self.dilation[i]);
            let (pl, pr) = (pl as i64, pr as i64);
            if self.boundary_mode == BoundaryMode::Dirichlet {
                pre.push((0, 0));
                post.push((pl, pr + o));
                continue;
            }
            let ext = (self.dilation[i] * (k - 1)) as i64;
            let (tl, tr) = (ext - pl, ext - pr + o);
            // t ≥ 0 always (p ≤ d(k−1)), so the ceilings are of non-negative numbers.
            let (bl, br) = ((tl + s - 1) / s, (tr + s - 1) / s);
            pre.push((bl as usize, br as usize));
            post.push((pl - bl * s, pr - br * s + o));
        }
        (pre, post)
    }

    /// `[B, C_in, *N]` → `[B, C_out, *((N − 1)·s + 1 + o)]`; an error for a
    /// wrong rank (not `D + 2`), channel count or an empty axis.
    ///
    /// Computed with burn's transposed convolution, which skips the inserted
    /// zeros (about ten times faster on the CPU than convolving the dilated
    /// input at stride 2): pdequinox's cross-correlation of the dilated input
    /// padded by `(P_l, P_r)` with `w` is the full transposed convolution with
    /// the spatially flipped, channel-transposed kernel, cropped by
    /// `d(k−1) − P_l ≥ 0` on the left and `d(k−1) − P_r` on the right
    /// (zero padded where that is negative; the bias is added last).
    pub fn try_forward<const R: usize>(&self, x: Tensor<R>) -> Result<Tensor<R>> {
        let d = self.num_spatial_dims();
        check_input("PhysicsConvTranspose", &x, d, self.in_channels())?;
        let (pre, post) = self.paddings();
        let x = match self.boundary_mode {
            BoundaryMode::Dirichlet => x,
            mode => pad(x, &pre, mode),
        };
        let kernel = self.kernel_size();
        let w = self.transposed_kernel::<R>();
        let y = conv_transpose_nd(x, w, &self.stride, &self.dilation, self.groups);
        let crop: Vec<Offsets> = (0..d)
            .map(|i| {
                let ext = (self.dilation[i] * (kernel[i] - 1)) as i64;
                (post[i].0 - ext, post[i].1 - ext)
            })
            .collect();
        let y = pad_or_crop(y, &crop, BoundaryMode::Dirichlet);
        Ok(match &self.bias {
            Some(b) => {
                let mut shape = [1; R];
                shape[1] = self.out_channels();
                y + b.reshaped(shape)
            }
            None => y,
        })
    }

    /// The kernel in burn's transposed layout `[C_in, C_out/groups, *k]`,
    /// flipped on every spatial axis.
    fn transposed_kernel<const R: usize>(&self) -> Tensor<R> {
        let w = self.weight.dims();
        let g = self.groups;
        let taps: usize = w[2..].iter().product();
        let t: Tensor<4> = self.weight.reshaped([g, w[0] / g, w[1], taps]);
        let mut shape = [0; R];
        shape[0] = w[1] * g;
        shape[1] = w[0] / g;
        shape[2..].copy_from_slice(&w[2..]);
        let t: Tensor<R> = t.swap_dims(1, 2).reshape(shape);
        match R {
            3 => t.flip([2]),
            4 => t.flip([2, 3]),
            _ => t.flip([2, 3, 4]),
        }
    }

    /// [`try_forward`](Self::try_forward), panicking on a wrong input.
    pub fn forward<const R: usize>(&self, x: Tensor<R>) -> Tensor<R> {
        idx_flow_core::or_panic(self.try_forward(x))
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

/// burn's transposed convolution of matching rank without padding (the full
/// output, `(N − 1)·s + d·(k − 1) + 1` cells per axis): `x` `[B, C_in, *n]`,
/// `weight` `[C_in, C_out/g, *k]`.
fn conv_transpose_nd<const R: usize>(
    x: Tensor<R>,
    weight: Tensor<R>,
    stride: &[usize],
    dilation: &[usize],
    groups: usize,
) -> Tensor<R> {
    let (xd, wd) = (x.dims(), weight.dims());
    macro_rules! run {
        ($f:ident, $n:literal) => {{
            let o = ConvTransposeOptions::new(
                arr::<$n>(stride),
                [0; $n],
                [0; $n],
                arr::<$n>(dilation),
                groups,
            );
            let y = $f(
                x.reshape(arr::<{ $n + 2 }>(&xd)),
                weight.reshape(arr::<{ $n + 2 }>(&wd)),
                None,
                o,
            );
            let yd = y.dims();
            y.reshape(arr::<R>(&yd))
        }};
    }
    match R {
        3 => run!(conv_transpose1d, 1),
        4 => run!(conv_transpose2d, 2),
        5 => run!(conv_transpose3d, 3),
        _ => unreachable!("inputs are checked to have rank 3 to 5"),
    }
}
