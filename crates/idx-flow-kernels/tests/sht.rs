//! The spherical-harmonic transforms as tensor operations: the forward
//! against the HEALPix layer's float64 transforms (themselves equal to
//! healpy), and the gradient (the transpose) through autodiff against the
//! transpose of the dense matrix built column by column from the float64
//! forward, for both directions, both orderings and `mmax < lmax`.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::sht::{Alm, Complex64, SphericalTransform};
use idx_flow_kernels::sht::{ShtDirection, ShtSpec, alm2map, map2alm, transform};
use idx_flow_testing::rng::Rng;

/// `(nside, lmax, mmax)` of the cases: small enough for dense matrices.
const CASES: [(u32, usize, usize); 2] = [(4, 8, 8), (4, 10, 6)];

fn plan(nside: u32, lmax: usize, mmax: usize) -> Arc<SphericalTransform> {
    Arc::new(SphericalTransform::new(nside, lmax, Some(mmax)).unwrap())
}

fn pairs(v: &[f64]) -> Vec<Complex64> {
    v.chunks_exact(2)
        .map(|p| Complex64::new(p[0], p[1]))
        .collect()
}

fn flat(alm: &Alm) -> Vec<f64> {
    alm.values().iter().flat_map(|c| [c.re, c.im]).collect()
}

/// The float64 map as a function of its flat real inputs.
fn forward_f64(
    plan: &SphericalTransform,
    ordering: Ordering,
    iter: Option<usize>,
    x: &[f64],
) -> Vec<f64> {
    match iter {
        Some(iter) => flat(&plan.map2alm(x, ordering, iter).unwrap()),
        None => {
            let alm = Alm::from_values(plan.lmax(), plan.mmax(), pairs(x)).unwrap();
            plan.alm2map(&alm, ordering).unwrap()
        }
    }
}

/// Columns of the dense matrix of the map (`columns[j]` = image of unit vector `j`).
fn dense_columns(
    plan: &SphericalTransform,
    ordering: Ordering,
    iter: Option<usize>,
    inputs: usize,
) -> Vec<Vec<f64>> {
    (0..inputs)
        .map(|j| {
            let mut e = vec![0.0; inputs];
            e[j] = 1.0;
            forward_f64(plan, ordering, iter, &e)
        })
        .collect()
}

fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    worst / scale
}

#[test]
fn forward_and_gradient_equal_the_float64_transform_and_its_transpose() {
    let device = Device::default().autodiff();
    let mut rng = Rng::seeded(5);
    for (nside, lmax, mmax) in CASES {
        let plan = plan(nside, lmax, mmax);
        let npix = 12 * nside as usize * nside as usize;
        let n_alm = Alm::size(lmax, mmax);
        for ordering in [Ordering::Ring, Ordering::Nested] {
            for iter in [None, Some(0), Some(2)] {
                let case =
                    format!("nside {nside} lmax {lmax} mmax {mmax} {ordering:?} iter {iter:?}");
                let (inputs, outputs) = match iter {
                    Some(_) => (npix, 2 * n_alm),
                    None => (2 * n_alm, npix),
                };
                let batch = 2;
                let x = rng.normal_vec(batch * inputs);
                let w = rng.normal_vec(batch * outputs);
                let xt = Tensor::<1>::from_data(TensorData::new(x.clone(), [x.len()]), &device)
                    .require_grad();
                let y: Tensor<1> = match iter {
                    Some(iter) => map2alm(xt.clone().reshape([batch, npix]), &plan, ordering, iter)
                        .unwrap()
                        .reshape([batch * outputs]),
                    None => alm2map(xt.clone().reshape([batch, n_alm, 2]), &plan, ordering)
                        .unwrap()
                        .reshape([batch * outputs]),
                };
                let y_values: Vec<f32> = y.clone().into_data().iter().collect();
                let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), &device);
                let grads = (y * wt).sum().backward();
                let dx: Vec<f32> = xt.grad(&grads).unwrap().into_data().iter().collect();

                let columns = dense_columns(&plan, ordering, iter, inputs);
                for b in 0..batch {
                    let xb: Vec<f64> = x[b * inputs..(b + 1) * inputs]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    let want_y = forward_f64(&plan, ordering, iter, &xb);
                    let err = relative_error(&y_values[b * outputs..(b + 1) * outputs], &want_y);
                    assert!(err < 1e-5, "{case}: forward off by {err:e}");
                    // Mᵀw: column j of M dotted with w.
                    let wb = &w[b * outputs..(b + 1) * outputs];
                    let want_dx: Vec<f64> = columns
                        .iter()
                        .map(|c| c.iter().zip(wb).map(|(m, w)| m * *w as f64).sum())
                        .collect();
                    let err = relative_error(&dx[b * inputs..(b + 1) * inputs], &want_dx);
                    assert!(err < 1e-5, "{case}: gradient off by {err:e}");
                }
            }
        }
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let device = Device::default();
    let plan = plan(4, 8, 8);
    let maps = Tensor::<2>::zeros([2, 100], &device);
    let e = map2alm(maps, &plan, Ordering::Ring, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("maps [B, 192]") && e.contains("[2, 100]"), "{e}");
    let alm = Tensor::<3>::zeros([1, 44, 2], &device);
    let e = alm2map(alm, &plan, Ordering::Ring).unwrap_err().to_string();
    assert!(
        e.contains("coefficients [B, 45, 2]") && e.contains("[1, 44, 2]"),
        "{e}"
    );
    let spec = ShtSpec {
        plan,
        ordering: Ordering::Ring,
        direction: ShtDirection::Synthesis,
        transpose: false,
    };
    let e = transform(&[0.0; 89], 1, &spec).unwrap_err().to_string();
    assert!(
        e.contains("1 rows of 90 values") && e.contains("89 values"),
        "{e}"
    );
}
