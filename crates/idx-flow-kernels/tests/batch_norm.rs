//! The fused training-mode batch norm against a float64 reference: the
//! output, the statistics, and the input, weight and bias gradients of
//! `Σ y·g`, for channel counts with their own inlined loops (3, 16, 32, 64)
//! and without (5), with and without an affine, more rows than one
//! summation block and one task, and a large common offset (no
//! cancellation); bit-equal results on one thread and two; and the errors.

mod norm_checks;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::batch_norm::batch_norm_train;
use idx_flow_testing::rng::uniform as values;
use idx_flow_testing::threads::{bits, on_threads};
use norm_checks::{check, flat};

/// `[y, dx, dw, db, mean, var]` of a batch norm of rows `x` `[M, C]` in
/// float64, the gradients those of `Σ y·g`.
fn reference(x: &[f32], g: &[f32], w: &[f32], b: &[f32], c: usize, eps: f64) -> [Vec<f64>; 6] {
    let m = x.len() / c;
    let col = |v: &[f32], j: usize| -> Vec<f64> { (0..m).map(|r| v[r * c + j] as f64).collect() };
    let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut dw, mut db, mut means, mut vars) =
        (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    for j in 0..c {
        let (xs, gs) = (col(x, j), col(g, j));
        let mean = xs.iter().sum::<f64>() / m as f64;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = xs.iter().map(|v| (v - mean) * rstd).collect();
        let sum_g = gs.iter().sum::<f64>();
        let sum_gx = gs.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>();
        let wj = w[j] as f64;
        for r in 0..m {
            y[r * c + j] = xhat[r] * wj + b[j] as f64;
            dx[r * c + j] = wj * rstd * (gs[r] - sum_g / m as f64 - xhat[r] * sum_gx / m as f64);
        }
        (dw[j], db[j], means[j], vars[j]) = (sum_gx, sum_g, mean, var);
    }
    [y, dx, dw, db, means, vars]
}

#[test]
fn batch_norm_matches_float64() {
    let device = Device::default().autodiff();
    // (rows, channels, affine, offset added to x)
    let cases = [
        (37usize, 3usize, true, 0.0f32),
        (3000, 16, true, 0.0),
        (1000, 5, false, 0.0),
        (130, 32, true, 1000.0),
        (2, 64, true, 0.0),
    ];
    for (case, &(m, c, affine, offset)) in cases.iter().enumerate() {
        let seed = 200 + 10 * case as u64;
        let xv: Vec<f32> = values(m * c, seed).iter().map(|v| v + offset).collect();
        let gv = values(m * c, seed + 1);
        let (wv, bv) = if affine {
            (values(c, seed + 2), values(c, seed + 3))
        } else {
            (vec![1.0; c], vec![0.0; c])
        };
        let vec1 =
            |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &device);
        let x = vec1(&xv).reshape([m, c]).require_grad();
        let w = vec1(&wv).require_grad();
        let b = vec1(&bv).require_grad();
        let (wo, bo) = if affine {
            (Some(w.clone()), Some(b.clone()))
        } else {
            (None, None)
        };
        let (y, stats) = batch_norm_train(x.clone(), wo, bo, 1e-5).expect("valid");
        let grads = (y.clone() * vec1(&gv).reshape([m, c])).sum().backward();
        let [ry, rdx, rdw, rdb, rmean, rvar] = reference(&xv, &gv, &wv, &bv, c, 1e-5);
        let label = format!("batch norm [{m}, {c}], offset {offset}");
        // A large offset costs float32 the offset's ulp on x itself.
        let tol = if offset > 0.0 { 2e-3 } else { 2e-5 };
        check(&format!("{label}: y"), flat(y), &ry, tol);
        check(
            &format!("{label}: dx"),
            flat(x.grad(&grads).unwrap()),
            &rdx,
            tol,
        );
        let stats: Vec<f32> = stats.into_data().iter().collect();
        let stat = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &device);
        check(&format!("{label}: mean"), stat(&stats[..c]), &rmean, 1e-6);
        check(
            &format!("{label}: variance"),
            stat(&stats[c..]),
            &rvar,
            1e-5,
        );
        if affine {
            check(
                &format!("{label}: dw"),
                w.grad(&grads).unwrap(),
                &rdw,
                tol.max(1e-4),
            );
            check(&format!("{label}: db"), b.grad(&grads).unwrap(), &rdb, 1e-5);
        } else {
            assert!(
                w.grad(&grads).is_none(),
                "{label}: no weight, no weight gradient"
            );
        }
    }
}

#[test]
fn batch_norm_results_do_not_depend_on_threads() {
    let device = Device::default().autodiff();
    let (m, c) = (20_000, 16);
    let run = |threads: usize| {
        on_threads(threads, || {
            let x = Tensor::<1>::from_data(TensorData::new(values(m * c, 17), [m * c]), &device)
                .reshape([m, c])
                .require_grad();
            let w =
                Tensor::<1>::from_data(TensorData::new(values(c, 18), [c]), &device).require_grad();
            let (y, stats) = batch_norm_train(x.clone(), Some(w.clone()), None, 1e-5).unwrap();
            let grads = (y.clone() * y.clone()).sum().backward();
            [
                flat(y.inner()),
                flat(stats.inner()),
                flat(x.grad(&grads).unwrap()),
                w.grad(&grads).unwrap(),
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
fn empty_batches_and_bad_affines_are_refused_and_no_channels_pass() {
    let device = Device::default();
    let e = batch_norm_train(Tensor::<2>::zeros([0, 4], &device), None, None, 1e-5)
        .expect_err("no rows")
        .to_string();
    assert!(e.contains("[0, 4]") && e.contains("M > 0"), "{e}");
    let (y, stats) = batch_norm_train(Tensor::<2>::zeros([3, 0], &device), None, None, 1e-5)
        .expect("no channels: nothing to normalise");
    assert_eq!((y.dims(), stats.dims()), ([3, 0], [2, 0]));
    let x = Tensor::<2>::zeros([3, 4], &device);
    let e = batch_norm_train(x, None, Some(Tensor::<1>::zeros([5], &device)), 1e-5)
        .expect_err("bias of 5 for 4 channels")
        .to_string();
    assert!(
        e.contains("bias") && e.contains("[4]") && e.contains("[5]"),
        "{e}"
    );
    for eps in [-1e-5, f64::NAN, f64::INFINITY, 1e300] {
        let x = Tensor::<2>::zeros([3, 4], &device);
        let e = batch_norm_train(x, None, None, eps)
            .expect_err("a negative or non-finite eps")
            .to_string();
        assert!(e.contains("eps") && e.contains("finite"), "{e}");
    }
}
