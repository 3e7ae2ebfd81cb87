//! Normalisation layers of idx_flow, on `[B, N, C]` spatial tensors, plus the
//! PyTorch-equivalent building blocks [`BatchNorm1d`] (channels last, with
//! PyTorch's unbiased running variance) and [`LayerNorm`].
//!
//! | layer | statistics over | state dict names |
//! |---|---|---|
//! | [`SpatialBatchNorm`] | batch and points, per channel | `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var`, `bn.num_batches_tracked` |
//! | [`SpatialLayerNorm`] | channels, per point | `ln.weight`, `ln.bias` |
//! | [`SpatialInstanceNorm`] | points, per sample and channel | `instance_norm.weight`, `instance_norm.bias` (affine only) |
//! | [`SpatialGroupNorm`] | points and the channels of a group, per sample | `gn.weight`, `gn.bias` |
//!
//! All variances are biased (divide by the count), as in PyTorch; the running
//! variance of batch norm is updated with the unbiased batch variance.
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_nn::{SpatialBatchNormConfig, SpatialGroupNormConfig, set_training};
//!
//! let device = Device::default().autodiff();
//! let bn = SpatialBatchNormConfig::new(6).init(&device)?;
//! let gn = SpatialGroupNormConfig::new(3, 6).init(&device)?;
//! let x = Tensor::<3>::random([2, 48, 6], Distribution::Normal(1.0, 2.0), &device);
//! let y = gn.forward(bn.forward(x.clone())); // training: batch statistics
//! assert_eq!(y.dims(), [2, 48, 6]);
//! let bn = set_training(bn, false);          // evaluation: running statistics
//! assert_eq!(bn.forward(x).dims(), [2, 48, 6]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::{Device, Tensor};
use idx_flow_kernels::batch_norm as fused_batch_norm;
use idx_flow_kernels::norm as fused_norm;

use super::{check_dims, check_positive, is_training, or_panic};
use crate::{Error, Result};
use idx_flow_core::reduce::{Rows, split};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState, key};

/// Checks the last axis of `dims`.
fn check_last(layer: &str, dims: &[usize], c: usize) -> Result<()> {
    if dims.last() == Some(&c) {
        Ok(())
    } else {
        Err(Error::Shape {
            context: format!("{layer} input"),
            expected: format!("[..., {c}]"),
            got: format!("{dims:?}"),
        })
    }
}

fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::arg(
            "eps",
            format!("got {eps}, expected a finite positive number"),
        ))
    }
}

fn affine_params(
    c: usize,
    affine: bool,
    device: &Device,
) -> (Option<Param<Tensor<1>>>, Option<Param<Tensor<1>>>) {
    if affine {
        (
            Some(Param::from_tensor(Tensor::ones([c], device))),
            Some(Param::from_tensor(Tensor::zeros([c], device))),
        )
    } else {
        (None, None)
    }
}

/// `x·w + b` over the last axis (when affine).
fn affine<const D: usize>(
    x: Tensor<D>,
    w: &Option<Param<Tensor<1>>>,
    b: &Option<Param<Tensor<1>>>,
) -> Tensor<D> {
    let mut shape = [1usize; D];
    let x = match w {
        Some(w) => {
            shape[D - 1] = w.val().dims()[0];
            x * w.val().reshape(shape)
        }
        None => x,
    };
    match b {
        Some(b) => {
            shape[D - 1] = b.val().dims()[0];
            x + b.val().reshape(shape)
        }
        None => x,
    }
}

fn visit_affine<V: StateVisitor>(
    prefix: &str,
    w: &Option<Param<Tensor<1>>>,
    b: &Option<Param<Tensor<1>>>,
    v: &mut V,
) {
    if let Some(w) = w {
        v.param(&key(prefix, "weight"), w);
    }
    if let Some(b) = b {
        v.param(&key(prefix, "bias"), b);
    }
}

type Affine = (Option<Param<Tensor<1>>>, Option<Param<Tensor<1>>>);

fn load_affine(
    prefix: &str,
    w: Option<Param<Tensor<1>>>,
    b: Option<Param<Tensor<1>>>,
    l: &mut StateLoader<'_>,
) -> Result<Affine> {
    let w = match w {
        Some(w) => Some(l.param(&key(prefix, "weight"), w)?),
        None => None,
    };
    let b = match b {
        Some(b) => Some(l.param(&key(prefix, "bias"), b)?),
        None => None,
    };
    Ok((w, b))
}

/// PyTorch's `nn.BatchNorm1d` on channels-last rows `[M, C]`
/// (`track_running_stats=True`): batch statistics and running-statistics
/// updates while training, running statistics otherwise. As burn's
/// `RunningState`, updates made by several threads on clones of the module are
/// averaged.
#[derive(Module, Debug)]
pub struct BatchNorm1d {
    /// `[C]`, ones at start (`weight`), when affine.
    pub weight: Option<Param<Tensor<1>>>,
    /// `[C]`, zeros at start (`bias`), when affine.
    pub bias: Option<Param<Tensor<1>>>,
    /// `[C]`, zeros at start.
    pub running_mean: RunningState<Tensor<1>>,
    /// `[C]`, ones at start; updated with the unbiased batch variance.
    pub running_var: RunningState<Tensor<1>>,
    /// Number of training forwards, `[1]` (int64 scalar in the state dict).
    pub num_batches_tracked: RunningState<Tensor<1>>,
    /// Whether batch statistics are used and the running ones updated.
    pub training: Param<Flag>,
    /// `running = (1 − momentum)·running + momentum·batch`.
    pub momentum: f64,
    /// Added to the variance.
    pub eps: f64,
}

impl BatchNorm1d {
    /// A batch norm over `c` channels.
    pub fn new(c: usize, eps: f64, momentum: f64, affine: bool, device: &Device) -> Result<Self> {
        check_positive("num_features", c)?;
        check_eps(eps)?;
        if !(momentum.is_finite() && (0.0..=1.0).contains(&momentum)) {
            return Err(Error::arg(
                "momentum",
                format!("got {momentum}, expected a number in [0, 1]"),
            ));
        }
        let (weight, bias) = affine_params(c, affine, device);
        Ok(Self {
            weight,
            bias,
            running_mean: RunningState::new(Tensor::zeros([c], device)),
            running_var: RunningState::new(Tensor::ones([c], device)),
            num_batches_tracked: RunningState::new(Tensor::zeros([1], device)),
            training: Param::from_bool(true),
            momentum,
            eps,
        })
    }

    /// Channels.
    pub fn num_features(&self) -> usize {
        self.running_mean.value().dims()[0]
    }

    /// `[M, C]` → `[M, C]`. Training needs `M > 1` (PyTorch's rule); `layer` names the caller in errors.
    pub fn forward_rows(&self, layer: &str, x: Tensor<2>) -> Result<Tensor<2>> {
        let [m, c] = x.dims();
        check_dims(layer, &[m, c], &[None, Some(self.num_features())])?;
        let device = x.device();
        let rows = Rows::new(m, c);
        let training = is_training(&self.training, &x);
        let x3 = rows.view(x);
        let y3 = if training {
            if m < 2 {
                return Err(Error::Shape {
                    context: format!("{layer} (batch norm in training)"),
                    expected: format!("more than 1 value per channel ([M > 1, {c}])"),
                    got: format!("[{m}, {c}]"),
                });
            }
            let (y3, mean, var, affine_done) = if fused_norm::available(&device) {
                // One fused operation each way instead of about ten forward
                // and twenty backward (the affine included).
                let w = self.weight.as_ref().map(|w| w.val());
                let b = self.bias.as_ref().map(|b| b.val());
                let (y, stats) =
                    fused_batch_norm::batch_norm_train(rows.unview(x3), w, b, self.eps)?;
                let mean = stats.clone().slice([0..1, 0..c]).reshape([1, 1, c]);
                let var = stats.slice([1..2, 0..c]).reshape([1, 1, c]);
                (rows.view(y), mean, var, true)
            } else {
                let mean = rows.mean(x3.clone());
                let xc = x3 - rows.spread(mean.clone());
                let var = rows.mean(xc.clone().square());
                let y3 = xc * rows.spread((var.clone() + self.eps).sqrt().recip());
                (y3, mean, var, false)
            };

            let mom = self.momentum;
            let rm = self.running_mean.value_sync().to_device(&device);
            let rv = self.running_var.value_sync().to_device(&device);
            let n = self.num_batches_tracked.value_sync().to_device(&device);
            let unbiased = var.detach().reshape([c]) * (m as f64 / (m as f64 - 1.0));
            self.running_mean
                .update((rm * (1.0 - mom) + mean.detach().reshape([c]) * mom).detach());
            self.running_var
                .update((rv * (1.0 - mom) + unbiased * mom).detach());
            self.num_batches_tracked.update((n + 1.0).detach());
            if affine_done {
                return Ok(rows.unview(y3));
            }
            y3
        } else {
            // `value_sync`: a training forward just before may have left its update pending.
            let rm = self.running_mean.value_sync().to_device(&device);
            let rv = self.running_var.value_sync().to_device(&device);
            (x3 - rows.spread_vec(rm)) * rows.spread_vec((rv + self.eps).sqrt().recip())
        };
        let y3 = match &self.weight {
            Some(w) => y3 * rows.spread_vec(w.val()),
            None => y3,
        };
        let y3 = match &self.bias {
            Some(b) => y3 + rows.spread_vec(b.val()),
            None => y3,
        };
        Ok(rows.unview(y3))
    }

    /// Number of training forwards so far.
    pub fn batches_tracked(&self) -> u64 {
        let v: Vec<f32> = self
            .num_batches_tracked
            .value_sync()
            .into_data()
            .iter::<f32>()
            .collect();
        v[0] as u64
    }
}

impl TorchState for BatchNorm1d {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_affine(prefix, &self.weight, &self.bias, v);
        v.buffer(
            &key(prefix, "running_mean"),
            &self.running_mean.value_sync(),
        );
        v.buffer(&key(prefix, "running_var"), &self.running_var.value_sync());
        v.int_buffer(
            &key(prefix, "num_batches_tracked"),
            &[],
            &[self.batches_tracked() as i64],
        );
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let (weight, bias) = load_affine(prefix, self.weight, self.bias, l)?;
        let device = self.running_mean.value().device();
        // Optional, as in PyTorch (older state dicts have no counter).
        let nbt_key = key(prefix, "num_batches_tracked");
        let num_batches_tracked = match l.optional(&nbt_key) {
            Some(t) => {
                let v = t.i64(&nbt_key)?;
                if v.len() != 1 {
                    return Err(Error::Shape {
                        context: format!("state dict entry '{nbt_key}'"),
                        expected: "a scalar".into(),
                        got: format!("{:?}", t.shape),
                    });
                }
                RunningState::new(Tensor::from_floats([v[0] as f32], &device))
            }
            None => self.num_batches_tracked,
        };
        Ok(Self {
            weight,
            bias,
            running_mean: l.running(&key(prefix, "running_mean"), self.running_mean)?,
            running_var: l.running(&key(prefix, "running_var"), self.running_var)?,
            num_batches_tracked,
            training: self.training,
            momentum: self.momentum,
            eps: self.eps,
        })
    }
}

/// PyTorch's `nn.LayerNorm(C)` over the last axis.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// `[C]`, ones at start, when elementwise affine.
    pub weight: Option<Param<Tensor<1>>>,
    /// `[C]`, zeros at start, when elementwise affine.
    pub bias: Option<Param<Tensor<1>>>,
    /// Added to the variance.
    pub eps: f64,
    /// Channels.
    pub num_features: usize,
}

impl LayerNorm {
    /// A layer norm over `c` channels.
    pub fn new(c: usize, eps: f64, elementwise_affine: bool, device: &Device) -> Result<Self> {
        check_positive("num_features", c)?;
        check_eps(eps)?;
        let (weight, bias) = affine_params(c, elementwise_affine, device);
        Ok(Self {
            weight,
            bias,
            eps,
            num_features: c,
        })
    }

    /// `[..., C]` → `[..., C]`.
    ///
    /// # Panics
    /// If the last axis is not `C` (the layers using it check their inputs first).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if let Err(e) = check_last("LayerNorm", &x.dims(), self.num_features) {
            panic!("{e}");
        }
        if fused_norm::available(&x.device()) {
            // One fused pass each way on the CPU (idx_flow_kernels::norm).
            let (w, b) = (
                self.weight.as_ref().map(|w| w.val()),
                self.bias.as_ref().map(|b| b.val()),
            );
            return fused_norm::layer_norm(x, w, b, self.eps)
                .expect("the input's last axis and the affine were checked");
        }
        let mean = x.clone().mean_dim(D - 1);
        let xc = x - mean;
        let var = xc.clone().square().mean_dim(D - 1);
        affine(xc / (var + self.eps).sqrt(), &self.weight, &self.bias)
    }
}

impl TorchState for LayerNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_affine(prefix, &self.weight, &self.bias, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let (weight, bias) = load_affine(prefix, self.weight, self.bias, l)?;
        Ok(Self {
            weight,
            bias,
            ..self
        })
    }
}

/// Configuration of a [`SpatialBatchNorm`].
#[derive(Config, Debug)]
pub struct SpatialBatchNormConfig {
    /// Channels `C`.
    pub num_features: usize,
    /// Added to the variance. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
    /// Weight of the newest batch in the running statistics, in `[0, 1]`
    /// (PyTorch's `momentum=None`, a cumulative average, is not offered: idx_flow
    /// types it as a float). Default: 0.1.
    #[config(default = 0.1)]
    pub momentum: f64,
    /// Learnable per-channel scale and shift. Default: true.
    #[config(default = true)]
    pub affine: bool,
}

/// idx_flow's `SpatialBatchNorm`: batch norm per channel over batch and points.
#[derive(Module, Debug)]
pub struct SpatialBatchNorm {
    /// The batch norm (`bn.*` in the state dict).
    pub bn: BatchNorm1d,
}

impl SpatialBatchNormConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<SpatialBatchNorm> {
        Ok(SpatialBatchNorm {
            bn: BatchNorm1d::new(
                self.num_features,
                self.eps,
                self.momentum,
                self.affine,
                device,
            )?,
        })
    }
}

impl SpatialBatchNorm {
    /// `[B, N, C]` → `[B, N, C]`; a wrong input shape (or a single value per
    /// channel in training) is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let c = self.bn.num_features();
        check_dims("SpatialBatchNorm", &x.dims(), &[None, None, Some(c)])?;
        let [b, n, _] = x.dims();
        Ok(self
            .bn
            .forward_rows("SpatialBatchNorm", x.reshape([b * n, c]))?
            .reshape([b, n, c]))
    }

    /// `[B, N, C]` → `[B, N, C]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialBatchNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.bn.visit_state(&key(prefix, "bn."), v)
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(Self {
            bn: self.bn.load_state(&key(prefix, "bn."), l)?,
        })
    }
}

/// Configuration of a [`SpatialLayerNorm`].
#[derive(Config, Debug)]
pub struct SpatialLayerNormConfig {
    /// Channels `C`.
    pub num_features: usize,
    /// Added to the variance. Default: 1e-6 (idx_flow's, not PyTorch's 1e-5).
    #[config(default = 1e-6)]
    pub eps: f64,
    /// Learnable per-channel scale and shift. Default: true.
    #[config(default = true)]
    pub elementwise_affine: bool,
}

/// idx_flow's `SpatialLayerNorm`: layer norm over the channels of each point.
#[derive(Module, Debug)]
pub struct SpatialLayerNorm {
    /// The layer norm (`ln.*` in the state dict).
    pub ln: LayerNorm,
}

impl SpatialLayerNormConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<SpatialLayerNorm> {
        Ok(SpatialLayerNorm {
            ln: LayerNorm::new(self.num_features, self.eps, self.elementwise_affine, device)?,
        })
    }
}

impl SpatialLayerNorm {
    /// `[B, N, C]` → `[B, N, C]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            "SpatialLayerNorm",
            &x.dims(),
            &[None, None, Some(self.ln.num_features)],
        )?;
        Ok(self.ln.forward(x))
    }

    /// `[B, N, C]` → `[B, N, C]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialLayerNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.ln.visit_state(&key(prefix, "ln."), v)
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(Self {
            ln: self.ln.load_state(&key(prefix, "ln."), l)?,
        })
    }
}

/// Configuration of a [`SpatialInstanceNorm`] (PyTorch's `InstanceNorm1d` with
/// `track_running_stats=False`, so idx_flow's `momentum` has no effect and is not here).
#[derive(Config, Debug)]
pub struct SpatialInstanceNormConfig {
    /// Channels `C`.
    pub num_features: usize,
    /// Added to the variance. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
    /// Learnable per-channel scale and shift. Default: false.
    #[config(default = false)]
    pub affine: bool,
}

/// idx_flow's `SpatialInstanceNorm`: per sample and channel, over the points
/// (the same in training and evaluation).
#[derive(Module, Debug)]
pub struct SpatialInstanceNorm {
    /// `[C]` (`instance_norm.weight`), when affine.
    pub weight: Option<Param<Tensor<1>>>,
    /// `[C]` (`instance_norm.bias`), when affine.
    pub bias: Option<Param<Tensor<1>>>,
    /// Added to the variance.
    pub eps: f64,
    /// Channels.
    pub num_features: usize,
}

impl SpatialInstanceNormConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<SpatialInstanceNorm> {
        check_positive("num_features", self.num_features)?;
        check_eps(self.eps)?;
        let (weight, bias) = affine_params(self.num_features, self.affine, device);
        Ok(SpatialInstanceNorm {
            weight,
            bias,
            eps: self.eps,
            num_features: self.num_features,
        })
    }
}

impl SpatialInstanceNorm {
    /// `[B, N, C]` → `[B, N, C]`; a wrong input shape, or a single point
    /// (PyTorch's rule), is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            "SpatialInstanceNorm",
            &x.dims(),
            &[None, None, Some(self.num_features)],
        )?;
        let [b, n, c] = x.dims();
        if n < 2 {
            return Err(Error::Shape {
                context: "SpatialInstanceNorm input".into(),
                expected: format!("more than 1 point ([B, N > 1, {c}])"),
                got: format!("[{b}, {n}, {c}]"),
            });
        }
        // Points viewed as [a, b]: statistics and their gradients in two stages.
        let (pa, pb) = split(n);
        let x4 = x.reshape([b, pa, pb, c]);
        let stat = |t: Tensor<4>| t.sum_dim(2).sum_dim(1).expand([b, pa, 1, c]) / n as f64;
        let xc = x4.clone() - stat(x4);
        let var = stat(xc.clone().square());
        let y4 = xc * (var + self.eps).sqrt().recip();
        let spread = |v: Tensor<1>| v.reshape([1, 1, 1, c]).expand([b, pa, 1, c]);
        let y4 = match &self.weight {
            Some(w) => y4 * spread(w.val()),
            None => y4,
        };
        let y4 = match &self.bias {
            Some(bias) => y4 + spread(bias.val()),
            None => y4,
        };
        Ok(y4.reshape([b, n, c]))
    }

    /// `[B, N, C]` → `[B, N, C]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialInstanceNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_affine(&key(prefix, "instance_norm."), &self.weight, &self.bias, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let (weight, bias) =
            load_affine(&key(prefix, "instance_norm."), self.weight, self.bias, l)?;
        Ok(Self {
            weight,
            bias,
            ..self
        })
    }
}

/// Configuration of a [`SpatialGroupNorm`].
#[derive(Config, Debug)]
pub struct SpatialGroupNormConfig {
    /// Groups `G` (must divide the channels).
    pub num_groups: usize,
    /// Channels `C`.
    pub num_channels: usize,
    /// Added to the variance. Default: 1e-5.
    #[config(default = 1e-5)]
    pub eps: f64,
    /// Learnable per-channel scale and shift. Default: true.
    #[config(default = true)]
    pub affine: bool,
}

/// idx_flow's `SpatialGroupNorm`: per sample, over the points and the `C/G`
/// consecutive channels of each group; then a per-channel affine map.
#[derive(Module, Debug)]
pub struct SpatialGroupNorm {
    /// `[C]` (`gn.weight`), when affine.
    pub weight: Option<Param<Tensor<1>>>,
    /// `[C]` (`gn.bias`), when affine.
    pub bias: Option<Param<Tensor<1>>>,
    /// Groups.
    pub num_groups: usize,
    /// Channels.
    pub num_channels: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl SpatialGroupNormConfig {
    /// Builds the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<SpatialGroupNorm> {
        check_positive("num_groups", self.num_groups)?;
        check_positive("num_channels", self.num_channels)?;
        check_eps(self.eps)?;
        if !self.num_channels.is_multiple_of(self.num_groups) {
            return Err(Error::arg(
                "num_groups",
                format!(
                    "num_channels ({}) must be divisible by num_groups ({})",
                    self.num_channels, self.num_groups
                ),
            ));
        }
        let (weight, bias) = affine_params(self.num_channels, self.affine, device);
        Ok(SpatialGroupNorm {
            weight,
            bias,
            num_groups: self.num_groups,
            num_channels: self.num_channels,
            eps: self.eps,
        })
    }
}

impl SpatialGroupNorm {
    /// `[B, N, C]` → `[B, N, C]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            "SpatialGroupNorm",
            &x.dims(),
            &[None, None, Some(self.num_channels)],
        )?;
        let [b, n, c] = x.dims();
        let g = self.num_groups;
        let cg = c / g;
        // Points viewed as [a, b]: statistics and their gradients in stages.
        let (pa, pb) = split(n);
        let x5 = x.reshape([b, pa, pb, g, cg]);
        let count = (n * cg) as f64;
        let stat =
            |t: Tensor<5>| t.sum_dim(4).sum_dim(2).sum_dim(1).expand([b, pa, 1, g, 1]) / count;
        let xc = x5.clone() - stat(x5);
        let var = stat(xc.clone().square());
        let y5 = xc * (var + self.eps).sqrt().recip();
        let spread = |v: Tensor<1>| v.reshape([1, 1, 1, g, cg]).expand([b, pa, 1, g, cg]);
        let y5 = match &self.weight {
            Some(w) => y5 * spread(w.val()),
            None => y5,
        };
        let y5 = match &self.bias {
            Some(bias) => y5 + spread(bias.val()),
            None => y5,
        };
        Ok(y5.reshape([b, n, c]))
    }

    /// `[B, N, C]` → `[B, N, C]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialGroupNorm {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        visit_affine(&key(prefix, "gn."), &self.weight, &self.bias, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        let (weight, bias) = load_affine(&key(prefix, "gn."), self.weight, self.bias, l)?;
        Ok(Self {
            weight,
            bias,
            ..self
        })
    }
}
