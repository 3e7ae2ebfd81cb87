//! The spherical-harmonic transforms as tensor operations: the forward
//! against the HEALPix layer's float64 transforms (themselves equal to
//! healpy), and the gradient (the transpose) through autodiff against the
//! transpose of the dense matrix built column by column from the float64
//! forward, for both directions, both orderings and `mmax < lmax`, scalar
//! and spin-weighted (spins 1 and 2: map pairs and gradient / curl pairs).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::sht::{Alm, Complex64, SphericalTransform};
use idx_flow_kernels::sht::{
    ShtDirection, ShtSpec, alm2map, alm2map_spin, map2alm, map2alm_spin, transform,
};
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

/// The float64 map as a function of its flat real inputs (spin 0: one
/// field; spin `s`: two fields one after the other).
fn forward_f64(
    plan: &SphericalTransform,
    ordering: Ordering,
    iter: Option<usize>,
    spin: usize,
    x: &[f64],
) -> Vec<f64> {
    let alm = |v: &[f64]| Alm::from_values(plan.lmax(), plan.mmax(), pairs(v)).unwrap();
    match (iter, spin) {
        (Some(iter), 0) => flat(&plan.map2alm(x, ordering, iter).unwrap()),
        (None, 0) => plan.alm2map(&alm(x), ordering).unwrap(),
        (Some(iter), s) => {
            let (q, u) = x.split_at(x.len() / 2);
            let [e, b] = plan.map2alm_spin([q, u], s, ordering, iter).unwrap();
            [flat(&e), flat(&b)].concat()
        }
        (None, s) => {
            let (e, b) = x.split_at(x.len() / 2);
            plan.alm2map_spin([&alm(e), &alm(b)], s, ordering)
                .unwrap()
                .concat()
        }
    }
}

/// Columns of the dense matrix of the map (`columns[j]` = image of unit vector `j`).
fn dense_columns(
    plan: &SphericalTransform,
    ordering: Ordering,
    iter: Option<usize>,
    spin: usize,
    inputs: usize,
) -> Vec<Vec<f64>> {
    (0..inputs)
        .map(|j| {
            let mut e = vec![0.0; inputs];
            e[j] = 1.0;
            forward_f64(plan, ordering, iter, spin, &e)
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
        for (ordering, spin) in [
            (Ordering::Ring, 0),
            (Ordering::Nested, 0),
            (Ordering::Ring, 2),
            (Ordering::Nested, 1),
        ] {
            for iter in [None, Some(0), Some(2)] {
                let case = format!(
                    "nside {nside} lmax {lmax} mmax {mmax} {ordering:?} spin {spin} iter {iter:?}"
                );
                let fields = if spin == 0 { 1 } else { 2 };
                let (inputs, outputs) = match iter {
                    Some(_) => (fields * npix, fields * 2 * n_alm),
                    None => (fields * 2 * n_alm, fields * npix),
                };
                let batch = 2;
                let x = rng.normal_vec(batch * inputs);
                let w = rng.normal_vec(batch * outputs);
                let xt = Tensor::<1>::from_data(TensorData::new(x.clone(), [x.len()]), &device)
                    .require_grad();
                let y: Tensor<1> = match (iter, spin) {
                    (Some(iter), 0) => {
                        map2alm(xt.clone().reshape([batch, npix]), &plan, ordering, iter)
                            .unwrap()
                            .reshape([batch * outputs])
                    }
                    (None, 0) => alm2map(xt.clone().reshape([batch, n_alm, 2]), &plan, ordering)
                        .unwrap()
                        .reshape([batch * outputs]),
                    (Some(iter), s) => map2alm_spin(
                        xt.clone().reshape([batch, 2, npix]),
                        &plan,
                        ordering,
                        s,
                        iter,
                    )
                    .unwrap()
                    .reshape([batch * outputs]),
                    (None, s) => {
                        alm2map_spin(xt.clone().reshape([batch, 2, n_alm, 2]), &plan, ordering, s)
                            .unwrap()
                            .reshape([batch * outputs])
                    }
                };
                let y_values: Vec<f32> = y.clone().into_data().iter().collect();
                let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), &device);
                let grads = (y * wt).sum().backward();
                let dx: Vec<f32> = xt.grad(&grads).unwrap().into_data().iter().collect();

                let columns = dense_columns(&plan, ordering, iter, spin, inputs);
                for b in 0..batch {
                    let xb: Vec<f64> = x[b * inputs..(b + 1) * inputs]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    let want_y = forward_f64(&plan, ordering, iter, spin, &xb);
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
        plan: plan.clone(),
        ordering: Ordering::Ring,
        direction: ShtDirection::Synthesis,
        transpose: false,
        spin: 0,
    };
    let e = transform(&[0.0; 89], 1, &spec).unwrap_err().to_string();
    assert!(
        e.contains("1 rows of 90 values") && e.contains("89 values"),
        "{e}"
    );
    // Spin: a pair of maps per row, and a spin the transforms take.
    let single = Tensor::<3>::zeros([2, 1, 192], &device);
    let e = map2alm_spin(single, &plan, Ordering::Ring, 2, 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("maps [B, 2, 192]") && e.contains("[2, 1, 192]"),
        "{e}"
    );
    let eb = Tensor::<4>::zeros([1, 2, 45, 2], &device);
    let e = alm2map_spin(eb.clone(), &plan, Ordering::Ring, 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spin 0"), "{e}");
    let e = alm2map_spin(eb, &plan, Ordering::Ring, 9)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spin 9"), "{e}");
}
