//! Spherical-harmonic transforms of HEALPix maps as differentiable backend
//! operations, so that spectral layers on the sphere can be trained: the
//! synthesis `alm → map` (healpy's `alm2map`) and the analysis
//! `map → alm` (healpy's `map2alm`, with its Jacobi `iter`), each with its
//! transpose as the backward.
//!
//! Maps are `[B, npix]` in the plan's grid and the given ordering;
//! coefficients are `[B, n_alm, 2]`, `(re, im)` pairs in healpy's layout
//! ([`Alm::index_of`]). The fields are real, so the map depends only on
//! `a_lm` with `m ≥ 0`, and the imaginary part of each `a_l0` is ignored (its
//! gradient is zero). The spin-weighted transforms ([`alm2map_spin`],
//! [`map2alm_spin`]: a vector field's two components, or Stokes Q and U)
//! take map pairs `[B, 2, npix]` and gradient / curl coefficients
//! `[B, 2, n_alm, 2]`, with the same algebra below applied to both.
//!
//! Both directions are linear. With `S` the synthesis and `C` the
//! one-step analysis (`4π/npix · Σ_p map_p Y*_lm(p)`), the analysis with
//! `iter` steps is `T = Σ_{j≤iter} (I − C·S)^j·C`, and the transposes (with
//! the real and imaginary parts as separate real inputs) are
//! `Sᵀ = D·(complex adjoint of S)` where `D` doubles `m > 0` and drops
//! `Im a_l0`, `Cᵀ = 4π/npix · S·D⁺` (`D⁺` halves `m > 0`, drops `Im a_l0`), and
//! `Tᵀ = Cᵀ·Σ_{j≤iter} (I − Sᵀ·Cᵀ)^j`. Each is a fixed number of the plan's
//! transforms, in float64 inside, float32 at the tensor boundary.
//!
//! The transform runs on burn's CPU backend ([`available`]); rows are
//! transformed in parallel on rayon's pool, with the same bits on any
//! number of threads.
//!
//! ```
//! use std::sync::Arc;
//! use burn::tensor::{Device, Tensor, TensorData};
//! use idx_flow_healpix::geometry::Ordering;
//! use idx_flow_healpix::sht::SphericalTransform;
//! use idx_flow_kernels::sht::{alm2map, map2alm};
//!
//! let device = Device::default();
//! let plan = Arc::new(SphericalTransform::new(8, 16, None)?);
//! let map = Tensor::<2>::from_data(TensorData::new(vec![1.0f32; 768], [1, 768]), &device);
//! let alm = map2alm(map, &plan, Ordering::Nested, 3)?;        // [1, 153, 2]
//! assert_eq!(alm.dims(), [1, 153, 2]);
//! let back = alm2map(alm, &plan, Ordering::Nested)?;           // [1, 768]
//! let values: Vec<f32> = back.into_data().iter().collect();
//! // HEALPix quadrature is not exact: 3e-4 off after 3 iterations at lmax = 2·nside.
//! let worst = values.iter().fold(0f32, |m, v| m.max((v - 1.0).abs()));
//! assert!(worst < 1e-3, "{worst}");
//! # Ok::<(), idx_flow_kernels::Error>(())
//! ```

use std::sync::Arc;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::Tensor;
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::cpu::{f32_tensor, floats, output};
use crate::pointwise::{on_flex, require_flex};
use crate::{Error, Result};
use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::sht::{Alm, Complex64, SphericalTransform};

/// Which linear map of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShtDirection {
    /// `alm [B, n_alm, 2] → map [B, npix]`.
    Synthesis,
    /// `map [B, npix] → alm [B, n_alm, 2]` with `iter` Jacobi steps.
    Analysis {
        /// healpy's `iter` (3 by default there).
        iter: usize,
    },
}

/// One transform: the plan, the maps' ordering, the direction, and whether
/// its transpose is applied instead (the backward of the other).
#[derive(Clone)]
pub struct ShtSpec {
    /// Rings, FFT plans and recursion coefficients of `nside` and `lmax`.
    pub plan: Arc<SphericalTransform>,
    /// Pixel order of the maps.
    pub ordering: Ordering,
    /// The linear map.
    pub direction: ShtDirection,
    /// Apply its transpose: maps and coefficients swap places.
    pub transpose: bool,
    /// 0: scalar maps `[B, npix]` and coefficients `[B, n_alm, 2]`; `s ≥ 1`:
    /// spin-`s` map pairs `[B, 2, npix]` and their gradient and curl
    /// coefficients `[B, 2, n_alm, 2]` (healpy's `alm2map_spin` / `map2alm_spin`).
    pub spin: usize,
}

impl std::fmt::Debug for ShtSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShtSpec")
            .field("nside", &self.plan.nside())
            .field("lmax", &self.plan.lmax())
            .field("mmax", &self.plan.mmax())
            .field("ordering", &self.ordering)
            .field("direction", &self.direction)
            .field("transpose", &self.transpose)
            .field("spin", &self.spin)
            .finish()
    }
}

impl ShtSpec {
    /// The transpose of this map (its gradient).
    pub fn transposed(&self) -> Self {
        Self {
            transpose: !self.transpose,
            ..self.clone()
        }
    }

    /// Whether the input is a map (otherwise coefficients).
    fn reads_maps(&self) -> bool {
        matches!(self.direction, ShtDirection::Analysis { .. }) != self.transpose
    }

    fn npix(&self) -> usize {
        12 * self.plan.nside() as usize * self.plan.nside() as usize
    }

    fn n_alm(&self) -> usize {
        Alm::size(self.plan.lmax(), self.plan.mmax())
    }

    /// Fields per row: one scalar field, or a spin field's two components.
    fn fields(&self) -> usize {
        if self.spin == 0 { 1 } else { 2 }
    }

    /// The shapes of a batch of `b` maps and of its coefficients.
    fn shapes(&self, b: usize) -> (Vec<usize>, Vec<usize>) {
        let (npix, n_alm) = (self.npix(), self.n_alm());
        if self.spin == 0 {
            (vec![b, npix], vec![b, n_alm, 2])
        } else {
            (vec![b, 2, npix], vec![b, 2, n_alm, 2])
        }
    }

    /// The output shape for an input of `shape`, or an error naming the mismatch.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let fitting = shape.first().map(|&b| {
            let (maps, alm) = self.shapes(b);
            if self.reads_maps() {
                (maps, alm)
            } else {
                (alm, maps)
            }
        });
        match fitting {
            Some((want, out)) if shape == want.as_slice() => Ok(out),
            _ => {
                let (maps, alm) = self.shapes(0);
                let show = |s: Vec<usize>| {
                    let rest: Vec<String> = s[1..].iter().map(|d| d.to_string()).collect();
                    format!("[B, {}]", rest.join(", "))
                };
                let expected = if self.reads_maps() {
                    format!("maps {}", show(maps))
                } else {
                    format!("coefficients {}", show(alm))
                };
                Err(Error::Shape {
                    context: format!("spherical-harmonic transform {self:?}"),
                    expected,
                    got: format!("{shape:?}"),
                })
            }
        }
    }
}

/// The transform as a backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait ShtKernels: Backend {
    /// `x` transformed as `spec` says (shapes checked by the caller).
    fn sht(x: FloatTensor<Self>, spec: ShtSpec) -> FloatTensor<Self>;
}

/// `D` (`halve = false`: `m > 0` doubled) or `D⁺` (`halve = true`), in place;
/// both drop `Im a_l0`.
fn scale_orders(alm: &mut [Complex64], lmax: usize, halve: bool) {
    let factor = if halve { 0.5 } else { 2.0 };
    for v in &mut alm[..=lmax] {
        v.im = 0.0;
    }
    for v in &mut alm[lmax + 1..] {
        *v *= factor;
    }
}

/// The real linear maps of one row (one field, or a spin field's two), in float64.
struct Row<'a> {
    plan: &'a SphericalTransform,
    ordering: Ordering,
    spin: usize,
}

/// A row's coefficients (one set per field) and maps (one per field).
type Coefficients = Vec<Vec<Complex64>>;
type Maps = Vec<Vec<f64>>;

impl Row<'_> {
    fn alm(&self, values: Vec<Complex64>) -> Result<Alm> {
        Alm::from_values(self.plan.lmax(), self.plan.mmax(), values)
    }

    /// `S`.
    fn synthesis(&self, alm: Coefficients) -> Result<Maps> {
        let alms = alm
            .into_iter()
            .map(|a| self.alm(a))
            .collect::<Result<Vec<_>>>()?;
        if self.spin == 0 {
            return Ok(vec![self.plan.alm2map(&alms[0], self.ordering)?]);
        }
        let [q, u] = self
            .plan
            .alm2map_spin([&alms[0], &alms[1]], self.spin, self.ordering)?;
        Ok(vec![q, u])
    }

    /// The forward analysis with `iter` Jacobi steps.
    fn analysis(&self, maps: &Maps, iter: usize) -> Result<Coefficients> {
        if self.spin == 0 {
            let alm = self.plan.map2alm(&maps[0], self.ordering, iter)?;
            return Ok(vec![alm.into_values()]);
        }
        let [e, b] =
            self.plan
                .map2alm_spin([&maps[0], &maps[1]], self.spin, self.ordering, iter)?;
        Ok(vec![e.into_values(), b.into_values()])
    }

    /// `Sᵀ`.
    fn synthesis_t(&self, maps: &Maps) -> Result<Coefficients> {
        let mut alms = if self.spin == 0 {
            vec![
                self.plan
                    .alm2map_adjoint(&maps[0], self.ordering)?
                    .into_values(),
            ]
        } else {
            let [e, b] =
                self.plan
                    .alm2map_spin_adjoint([&maps[0], &maps[1]], self.spin, self.ordering)?;
            vec![e.into_values(), b.into_values()]
        };
        for alm in &mut alms {
            scale_orders(alm, self.plan.lmax(), false);
        }
        Ok(alms)
    }

    /// `Cᵀ = 4π/npix · S·D⁺`.
    fn analysis1_t(&self, mut alms: Coefficients) -> Result<Maps> {
        for alm in &mut alms {
            scale_orders(alm, self.plan.lmax(), true);
        }
        let weight = 4.0 * std::f64::consts::PI / (12.0 * (self.plan.nside() as f64).powi(2));
        let mut maps = self.synthesis(alms)?;
        maps.iter_mut().flatten().for_each(|v| *v *= weight);
        Ok(maps)
    }

    /// `Tᵀ = Cᵀ·Σ_{j≤iter} (I − Sᵀ·Cᵀ)^j`.
    fn analysis_t(&self, alms: Coefficients, iter: usize) -> Result<Maps> {
        let mut term = alms.clone();
        let mut sum = alms;
        for _ in 0..iter {
            let back = self.synthesis_t(&self.analysis1_t(term.clone())?)?;
            for ((t, b), s) in term
                .iter_mut()
                .flatten()
                .zip(back.iter().flatten())
                .zip(sum.iter_mut().flatten())
            {
                *t -= *b;
                *s += *t;
            }
        }
        self.analysis1_t(sum)
    }
}

/// `spec` applied to `rows` rows of `x` (f32), each read and written in
/// float64 (a row: one map or coefficient set, or a spin field's two).
pub fn transform(x: &[f32], rows: usize, spec: &ShtSpec) -> Result<Vec<f32>> {
    let row = Row {
        plan: &spec.plan,
        ordering: spec.ordering,
        spin: spec.spin,
    };
    let fields = spec.fields();
    let (map_len, alm_len) = (spec.npix(), 2 * spec.n_alm());
    let (in_len, out_len) = if spec.reads_maps() {
        (fields * map_len, fields * alm_len)
    } else {
        (fields * alm_len, fields * map_len)
    };
    if x.len() != rows * in_len {
        return Err(Error::Shape {
            context: format!("spherical-harmonic transform {spec:?}"),
            expected: format!("{rows} rows of {in_len} values"),
            got: format!("{} values", x.len()),
        });
    }
    let pairs = |v: &[f32]| -> Coefficients {
        v.chunks_exact(alm_len)
            .map(|field| {
                field
                    .chunks_exact(2)
                    .map(|p| Complex64::new(p[0] as f64, p[1] as f64))
                    .collect()
            })
            .collect()
    };
    let maps = |v: &[f32]| -> Maps {
        v.chunks_exact(map_len)
            .map(|field| field.iter().map(|&v| v as f64).collect())
            .collect()
    };
    let flat = |alms: Coefficients| -> Vec<f32> {
        alms.iter()
            .flatten()
            .flat_map(|c| [c.re as f32, c.im as f32])
            .collect()
    };
    let to_f32 =
        |maps: Maps| -> Vec<f32> { maps.into_iter().flatten().map(|v| v as f32).collect() };
    let out: Vec<Vec<f32>> = x
        .par_chunks(in_len)
        .map(|input| -> Result<Vec<f32>> {
            Ok(match (spec.direction, spec.transpose) {
                (ShtDirection::Synthesis, false) => to_f32(row.synthesis(pairs(input))?),
                (ShtDirection::Synthesis, true) => flat(row.synthesis_t(&maps(input))?),
                (ShtDirection::Analysis { iter }, false) => flat(row.analysis(&maps(input), iter)?),
                (ShtDirection::Analysis { iter }, true) => {
                    to_f32(row.analysis_t(pairs(input), iter)?)
                }
            })
        })
        .collect::<Result<_>>()?;
    debug_assert!(out.iter().all(|r| r.len() == out_len));
    Ok(out.concat())
}

impl ShtKernels for Flex {
    fn sht(x: FlexTensor, spec: ShtSpec) -> FlexTensor {
        let shape = x.layout().shape().to_vec();
        let out_shape = spec
            .output_shape(&shape)
            .expect("SHT shapes are checked before dispatch");
        let (x, dtype) = f32_tensor(x);
        output(
            transform(floats(&x), shape[0], &spec).expect("SHT shapes are checked before dispatch"),
            out_shape,
            dtype,
        )
    }
}

mod autodiff {
    use burn::backend::autodiff::Autodiff;
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::tensor::FloatTensor;

    use super::{ShtKernels, ShtSpec};

    /// The gradient of a linear map is its transpose applied to the output gradient.
    #[derive(Debug)]
    struct ShtBackward;

    impl<B: ShtKernels> Backward<B, 1> for ShtBackward {
        /// The transposed transform.
        type State = ShtSpec;

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [x_node] = ops.parents;
            let dy = grads.consume::<B>(&ops.node);
            if let Some(node) = x_node {
                grads.register::<B>(node.id, B::sht(dy, ops.state));
            }
        }
    }

    impl<B: ShtKernels, C: CheckpointStrategy> ShtKernels for Autodiff<B, C> {
        fn sht(x: FloatTensor<Self>, spec: ShtSpec) -> FloatTensor<Self> {
            match ShtBackward
                .prepare::<C>([x.node()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    let y = B::sht(x.into_primitive(), spec.clone());
                    prep.finish(spec.transposed(), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(B::sht(x.into_primitive(), spec)),
            }
        }
    }
}

/// Whether the transforms run on tensors of `device` (burn's CPU backend,
/// with or without autodiff).
pub fn available(device: &burn::tensor::Device) -> bool {
    on_flex(device)
}

fn run<const DI: usize, const DO: usize>(x: Tensor<DI>, spec: ShtSpec) -> Result<Tensor<DO>> {
    require_flex(&x.device(), "the spherical-harmonic transforms run")?;
    spec.output_shape(&x.dims())?;
    Ok(Tensor::from_dispatch(Dispatch::sht(
        x.into_dispatch(),
        spec,
    )))
}

/// Maps `[B, npix]` (in `ordering`) from coefficients `[B, n_alm, 2]`:
/// healpy's `alm2map`, differentiable.
pub fn alm2map(
    alm: Tensor<3>,
    plan: &Arc<SphericalTransform>,
    ordering: Ordering,
) -> Result<Tensor<2>> {
    run(
        alm,
        ShtSpec {
            plan: plan.clone(),
            ordering,
            direction: ShtDirection::Synthesis,
            transpose: false,
            spin: 0,
        },
    )
}

/// Coefficients `[B, n_alm, 2]` of maps `[B, npix]` (in `ordering`):
/// healpy's `map2alm` with `iter` Jacobi steps, differentiable.
pub fn map2alm(
    map: Tensor<2>,
    plan: &Arc<SphericalTransform>,
    ordering: Ordering,
    iter: usize,
) -> Result<Tensor<3>> {
    run(
        map,
        ShtSpec {
            plan: plan.clone(),
            ordering,
            direction: ShtDirection::Analysis { iter },
            transpose: false,
            spin: 0,
        },
    )
}

/// Spin-`spin` map pairs `[B, 2, npix]` (in `ordering`) from their gradient
/// and curl coefficients `[B, 2, n_alm, 2]`: healpy's `alm2map_spin`,
/// differentiable. `spin = 2` with E and B gives Stokes Q and U.
///
/// ```
/// use std::sync::Arc;
/// use burn::tensor::{Device, Tensor};
/// use idx_flow_healpix::geometry::Ordering;
/// use idx_flow_healpix::sht::SphericalTransform;
/// use idx_flow_kernels::sht::{alm2map_spin, map2alm_spin};
///
/// let device = Device::default();
/// let plan = Arc::new(SphericalTransform::new(8, 12, None)?);
/// let eb = Tensor::<4>::zeros([1, 2, 91, 2], &device);
/// let qu = alm2map_spin(eb, &plan, Ordering::Ring, 2)?;      // [1, 2, 768]
/// assert_eq!(qu.dims(), [1, 2, 768]);
/// let back = map2alm_spin(qu, &plan, Ordering::Ring, 2, 3)?; // [1, 2, 91, 2]
/// assert_eq!(back.dims(), [1, 2, 91, 2]);
/// # Ok::<(), idx_flow_kernels::Error>(())
/// ```
pub fn alm2map_spin(
    alm: Tensor<4>,
    plan: &Arc<SphericalTransform>,
    ordering: Ordering,
    spin: usize,
) -> Result<Tensor<3>> {
    run(
        alm,
        ShtSpec {
            plan: plan.clone(),
            ordering,
            direction: ShtDirection::Synthesis,
            transpose: false,
            spin: checked_spin(spin, plan)?,
        },
    )
}

/// Gradient and curl coefficients `[B, 2, n_alm, 2]` of spin-`spin` map
/// pairs `[B, 2, npix]` (in `ordering`): healpy's `map2alm_spin` (with
/// `iter` Jacobi steps, as its polarised `map2alm` refines E and B),
/// differentiable.
pub fn map2alm_spin(
    map: Tensor<3>,
    plan: &Arc<SphericalTransform>,
    ordering: Ordering,
    spin: usize,
    iter: usize,
) -> Result<Tensor<4>> {
    run(
        map,
        ShtSpec {
            plan: plan.clone(),
            ordering,
            direction: ShtDirection::Analysis { iter },
            transpose: false,
            spin: checked_spin(spin, plan)?,
        },
    )
}

/// `spin` if the plan's spin transforms take it (`1..=lmax`), else the
/// plan's error naming it.
fn checked_spin(spin: usize, plan: &SphericalTransform) -> Result<usize> {
    plan.check_spin(spin)?;
    Ok(spin)
}
