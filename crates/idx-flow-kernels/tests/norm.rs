//! The fused layer and group norms against float64 references: outputs,
//! input, weight and bias gradients of `Σ y·g`, for layer norms with and
//! without an affine, group norms of one, some and every channel per group,
//! rows longer than one summation block, and a large common offset (no
//! cancellation); bit-equal results on one thread and two; and the errors.

mod norm_checks;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::norm::{group_norm, layer_norm};
use idx_flow_testing::rng::uniform as values;
use idx_flow_testing::threads::{bits, on_threads};
use norm_checks::{check, flat};

/// Output, input, weight and bias gradients of `Σ y·g` in float64, for rows
/// of `n` values whose value `j` in row `r` has channel `channel(r, j)`.
fn reference(
    x: &[f32],
    g: &[f32],
    w: &[f32],
    b: &[f32],
    n: usize,
    eps: f64,
    channel: impl Fn(usize, usize) -> usize,
) -> [Vec<f64>; 4] {
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dw, mut db) = (vec![0.0; w.len()], vec![0.0; w.len()]);
    for (r, (xr, gr)) in x.chunks(n).zip(g.chunks(n)).enumerate() {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = xr.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let gw: Vec<f64> = (0..n)
            .map(|j| gr[j] as f64 * w[channel(r, j)] as f64)
            .collect();
        let mean_g = gw.iter().sum::<f64>() / n as f64;
        let mean_gx = gw.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n as f64;
        for j in 0..n {
            let c = channel(r, j);
            y[r * n + j] = xhat[j] * w[c] as f64 + b[c] as f64;
            dx[r * n + j] = rstd * (gw[j] - mean_g - xhat[j] * mean_gx);
            dw[c] += gr[j] as f64 * xhat[j];
            db[c] += gr[j] as f64;
        }
    }
    [y, dx, dw, db]
}

/// (shape [B, C, cells…] as 4-D, groups, offset added to x).
const GROUP_CASES: [([usize; 4], usize, f32); 5] = [
    ([2, 6, 4, 5], 3, 0.0),
    ([2, 6, 4, 5], 1, 0.0),
    ([3, 4, 2, 3], 4, 0.0),
    ([2, 4, 30, 30], 2, 0.0),
    ([1, 2, 16, 20], 1, 1000.0),
];

#[test]
fn group_norm_matches_float64() {
    let device = Device::default().autodiff();
    for (case, &(shape, groups, offset)) in GROUP_CASES.iter().enumerate() {
        let numel: usize = shape.iter().product();
        let c = shape[1];
        let cells = shape[2] * shape[3];
        let n = c / groups * cells;
        let seed = 10 * case as u64;
        let xv: Vec<f32> = values(numel, seed).iter().map(|v| v + offset).collect();
        let (gv, wv, bv) = (
            values(numel, seed + 1),
            values(c, seed + 2),
            values(c, seed + 3),
        );
        let vec1 =
            |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
        let x: Tensor<4> = vec1(&xv).reshape(shape).require_grad();
        let w = vec1(&wv).require_grad();
        let b = vec1(&bv).require_grad();
        let y =
            group_norm(x.clone(), groups, Some(w.clone()), Some(b.clone()), 1e-5).expect("valid");
        let grads = (y.clone() * vec1(&gv).reshape(shape)).sum().backward();
        let per_group = c / groups;
        let [ry, rdx, rdw, rdb] = reference(&xv, &gv, &wv, &bv, n, 1e-5, |r, j| {
            (r % groups) * per_group + j / cells
        });
        let label = format!("group norm {shape:?} / {groups}");
        // A large offset costs float32 the offset's ulp on x itself.
        let tol = if offset > 0.0 { 2e-3 } else { 2e-5 };
        check(&format!("{label}: y"), flat(y), &ry, tol);
        check(
            &format!("{label}: dx"),
            flat(x.grad(&grads).unwrap()),
            &rdx,
            tol,
        );
        check(&format!("{label}: dw"), w.grad(&grads).unwrap(), &rdw, 1e-4);
        check(&format!("{label}: db"), b.grad(&grads).unwrap(), &rdb, 1e-5);
    }
}

#[test]
fn layer_norm_matches_float64() {
    let device = Device::default().autodiff();
    for (case, &(rows, c, affine)) in [(15usize, 7usize, true), (4, 300, true), (6, 5, false)]
        .iter()
        .enumerate()
    {
        let seed = 100 + 10 * case as u64;
        let (xv, gv) = (values(rows * c, seed), values(rows * c, seed + 1));
        let (wv, bv) = if affine {
            (values(c, seed + 2), values(c, seed + 3))
        } else {
            (vec![1.0; c], vec![0.0; c])
        };
        let t = |v: &[f32], s: [usize; 2]| {
            Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device).reshape(s)
        };
        let x = t(&xv, [rows, c]).require_grad();
        let w = Tensor::<1>::from_data(TensorData::new(wv.clone(), [c]), &device).require_grad();
        let b = Tensor::<1>::from_data(TensorData::new(bv.clone(), [c]), &device).require_grad();
        let (wo, bo) = if affine {
            (Some(w.clone()), Some(b.clone()))
        } else {
            (None, None)
        };
        let y = layer_norm(x.clone(), wo, bo, 1e-5).expect("valid");
        let grads = (y.clone() * t(&gv, [rows, c])).sum().backward();
        let [ry, rdx, rdw, rdb] = reference(&xv, &gv, &wv, &bv, c, 1e-5, |_, j| j);
        let label = format!("layer norm [{rows}, {c}]");
        check(&format!("{label}: y"), flat(y), &ry, 2e-5);
        check(
            &format!("{label}: dx"),
            flat(x.grad(&grads).unwrap()),
            &rdx,
            2e-5,
        );
        if affine {
            check(&format!("{label}: dw"), w.grad(&grads).unwrap(), &rdw, 1e-4);
            check(&format!("{label}: db"), b.grad(&grads).unwrap(), &rdb, 1e-5);
        }
    }
}

#[test]
fn results_do_not_depend_on_threads() {
    let device = Device::default().autodiff();
    let run = |threads: usize| {
        on_threads(threads, || {
            let x = Tensor::<1>::from_data(
                TensorData::new(values(4 * 8 * 64 * 64, 7), [4 * 8 * 64 * 64]),
                &device,
            )
            .reshape([4, 8, 64, 64])
            .require_grad();
            let w =
                Tensor::<1>::from_data(TensorData::new(values(8, 8), [8]), &device).require_grad();
            let y = group_norm(x.clone(), 2, Some(w.clone()), None, 1e-5).unwrap();
            let grads = (y.clone() * y.clone()).sum().backward();
            let l = layer_norm(x.clone().reshape([2048, 64]), None, None, 1e-5).unwrap();
            [
                flat(y.inner()),
                flat(x.grad(&grads).unwrap()),
                w.grad(&grads).unwrap(),
                flat(l.inner()),
            ]
            .map(|t| bits(t.into_data().iter::<f32>()))
        })
    };
    assert!(
        run(1) == run(2),
        "results differ between one thread and two"
    );
}

#[test]
fn bad_groups_affines_and_eps_are_refused() {
    let device = Device::default();
    let x = Tensor::<3>::zeros([2, 6, 5], &device);
    let e = group_norm(x.clone(), 4, None, None, 1e-5)
        .expect_err("4 ∤ 6")
        .to_string();
    assert!(e.contains("4 groups") && e.contains("[2, 6, 5]"), "{e}");
    let w = Tensor::<1>::ones([5], &device);
    let e = group_norm(x, 3, Some(w), None, 1e-5)
        .expect_err("weight of 5 for 6 channels")
        .to_string();
    assert!(e.contains("[6]") && e.contains("[5]"), "{e}");
    for eps in [-1e-5, f64::NAN, f64::INFINITY, 1e300] {
        let x = Tensor::<3>::zeros([2, 6, 5], &device);
        let e = group_norm(x.clone(), 3, None, None, eps)
            .expect_err("a negative or non-finite eps")
            .to_string();
        assert!(e.contains("eps") && e.contains("finite"), "{e}");
        let e = layer_norm(x, None, None, eps)
            .expect_err("a negative or non-finite eps")
            .to_string();
        assert!(e.contains("eps") && e.contains("finite"), "{e}");
    }
}
