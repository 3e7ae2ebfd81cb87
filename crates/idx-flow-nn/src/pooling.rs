//! Pooling: [`SpatialPooling`] (mean, max or sum over each output pixel's k
//! graph neighbours), [`Squeeze`] (over all points: `[B, N, C]` → `[B, C]`) and
//! [`Unsqueeze`] (a vector repeated at every point: `[B, C]` → `[B, N, C]`).
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use idx_flow_healpix::geometry::HealpixGrid;
//! use idx_flow_healpix::graphs::ConnectionGraph;
//! use idx_flow_nn::{PoolType, SpatialPoolingConfig, SqueezeConfig, UnsqueezeConfig};
//!
//! let device = Device::default();
//! let graph = ConnectionGraph::knn(HealpixGrid::ring(4)?, HealpixGrid::ring(2)?, 4)?;
//! let pool = SpatialPoolingConfig::new().with_pool_type(PoolType::Max).init(&graph, &device)?;
//! let squeeze = SqueezeConfig::new().init();
//! let unsqueeze = UnsqueezeConfig::new(48).init()?;
//! let x = Tensor::<3>::random([2, 192, 3], Distribution::Normal(0.0, 1.0), &device);
//! let g = squeeze.forward(pool.forward(x)); // [2, 3]
//! assert_eq!(unsqueeze.forward(g).dims(), [2, 48, 3]);
//! # Ok::<(), idx_flow_nn::Error>(())
//! ```

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::gather::GraphIndices;
use super::{check_dims, check_positive, or_panic};
use crate::{Error, Result};
use idx_flow_core::reduce::{mean_points, sum_points};
use idx_flow_core::state_dict::{StateLoader, StateVisitor, TorchState};
use idx_flow_healpix::graphs::ConnectionGraph;

/// Reduction of [`SpatialPooling`] and [`Squeeze`] (idx_flow's `PoolingMethod`).
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum PoolType {
    /// Average.
    Mean,
    /// Maximum (the gradient goes to the maximal entry).
    Max,
    /// Sum.
    Sum,
}

impl PoolType {
    fn reduce<const D: usize>(self, x: Tensor<D>, dim: usize) -> Tensor<D> {
        match self {
            PoolType::Mean => x.mean_dim(dim),
            PoolType::Max => x.max_dim(dim),
            PoolType::Sum => x.sum_dim(dim),
        }
    }
}

impl std::str::FromStr for PoolType {
    type Err = Error;
    /// idx_flow's names: mean, max, sum.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "mean" => Ok(PoolType::Mean),
            "max" => Ok(PoolType::Max),
            "sum" => Ok(PoolType::Sum),
            _ => Err(Error::arg(
                "pool_type",
                format!("unknown pool_type '{s}', expected one of mean, max, sum"),
            )),
        }
    }
}

/// Configuration of a [`SpatialPooling`].
#[derive(Config, Debug)]
pub struct SpatialPoolingConfig {
    /// Reduction. Default: mean.
    #[config(default = "PoolType::Mean")]
    pub pool_type: PoolType,
}

/// idx_flow's `SpatialPooling` (no parameters; `connection_indices` buffer).
#[derive(Module, Debug)]
pub struct SpatialPooling {
    /// The graph's connection indices.
    pub indices: GraphIndices,
    /// Reduction.
    #[module(skip)]
    pub pool_type: PoolType,
}

impl SpatialPoolingConfig {
    /// Builds the layer for `graph` on `device`.
    pub fn init(&self, graph: &ConnectionGraph, device: &Device) -> Result<SpatialPooling> {
        Ok(SpatialPooling {
            indices: GraphIndices::new(graph, device),
            pool_type: self.pool_type,
        })
    }
}

impl SpatialPooling {
    /// `[B, N_in, C]` → `[B, N_out, C]`; a wrong input shape is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        check_dims(
            "SpatialPooling",
            &x.dims(),
            &[None, Some(self.indices.n_in()), None],
        )?;
        let (n_out, k) = (self.indices.n_out(), self.indices.k());
        // Mean and sum are weighted sums (fused, no gathered copy); max gathers.
        let uniform = |w: f64| Tensor::<3>::full([n_out, k, 1], w, &x.device());
        Ok(match self.pool_type {
            PoolType::Mean => self
                .indices
                .weighted_sum(x.clone(), &uniform(1.0 / k as f64)),
            PoolType::Sum => self.indices.weighted_sum(x.clone(), &uniform(1.0)),
            PoolType::Max => self
                .pool_type
                .reduce(self.indices.gather(x), 2)
                .squeeze_dim::<3>(2),
        })
    }

    /// `[B, N_in, C]` → `[B, N_out, C]`.
    ///
    /// # Panics
    /// On a wrong input shape, with [`try_forward`](Self::try_forward)'s message.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for SpatialPooling {
    fn visit_state<V: StateVisitor>(&self, prefix: &str, v: &mut V) {
        self.indices.visit(prefix, v);
    }

    fn load_state(self, prefix: &str, l: &mut StateLoader<'_>) -> Result<Self> {
        Ok(SpatialPooling {
            indices: self.indices.load(prefix, l)?,
            pool_type: self.pool_type,
        })
    }
}

/// Configuration of a [`Squeeze`].
#[derive(Config, Debug)]
pub struct SqueezeConfig {
    /// Reduction over the points. Default: mean.
    #[config(default = "PoolType::Mean")]
    pub reduction: PoolType,
}

/// idx_flow's `Squeeze`: `[B, N, C]` → `[B, C]`.
#[derive(Module, Debug)]
pub struct Squeeze {
    /// Reduction.
    #[module(skip)]
    pub reduction: PoolType,
}

impl SqueezeConfig {
    /// Builds the layer.
    pub fn init(&self) -> Squeeze {
        Squeeze {
            reduction: self.reduction,
        }
    }
}

impl Squeeze {
    /// `[B, N, C]` → `[B, C]`; no points (`N = 0`) is an [`Error::Shape`].
    pub fn try_forward(&self, x: Tensor<3>) -> Result<Tensor<2>> {
        let [b, n, c] = x.dims();
        if n == 0 {
            return Err(Error::Shape {
                context: "Squeeze input".into(),
                expected: format!("[B, N >= 1, {c}]"),
                got: format!("[{b}, 0, {c}]"),
            });
        }
        let y = match self.reduction {
            PoolType::Mean => mean_points(x),
            PoolType::Sum => sum_points(x),
            PoolType::Max => x.max_dim(1),
        };
        Ok(y.squeeze_dim::<2>(1))
    }

    /// `[B, N, C]` → `[B, C]`.
    ///
    /// # Panics
    /// When `N = 0`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        or_panic(self.try_forward(x))
    }
}

/// Configuration of an [`Unsqueeze`].
#[derive(Config, Debug)]
pub struct UnsqueezeConfig {
    /// Points to broadcast to.
    pub num_points: usize,
}

/// idx_flow's `Unsqueeze`: `[B, C]` → `[B, num_points, C]`.
#[derive(Module, Debug)]
pub struct Unsqueeze {
    /// Points.
    pub num_points: usize,
}

impl UnsqueezeConfig {
    /// Builds the layer (an error for 0 points).
    pub fn init(&self) -> Result<Unsqueeze> {
        check_positive("num_points", self.num_points)?;
        Ok(Unsqueeze {
            num_points: self.num_points,
        })
    }
}

impl Unsqueeze {
    /// `[B, C]` → `[B, num_points, C]` (never fails: any `[B, C]` is accepted).
    pub fn try_forward(&self, x: Tensor<2>) -> Result<Tensor<3>> {
        let [b, c] = x.dims();
        Ok(x.unsqueeze_dim::<3>(1).expand([b, self.num_points, c]))
    }

    /// `[B, C]` → `[B, num_points, C]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<3> {
        or_panic(self.try_forward(x))
    }
}

impl TorchState for Squeeze {
    fn visit_state<V: StateVisitor>(&self, _: &str, _: &mut V) {}
    fn load_state(self, _: &str, _: &mut StateLoader<'_>) -> Result<Self> {
        Ok(self)
    }
}

impl TorchState for Unsqueeze {
    fn visit_state<V: StateVisitor>(&self, _: &str, _: &mut V) {}
    fn load_state(self, _: &str, _: &mut StateLoader<'_>) -> Result<Self> {
        Ok(self)
    }
}
