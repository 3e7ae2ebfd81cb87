//! The complex scale kernel against float64 sums: the product, the gradient
//! of `Σ y·g` in the pairs and in the weight, for sizes whose parallel
//! blocks cross from one sample to the next; bit-equal results on one
//! thread and two; and the shape errors.

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::complex::scale;
use idx_flow_testing::rng::uniform as values;
use idx_flow_testing::threads::{bits, on_threads};

fn check(what: &str, got: Tensor<1>, want: &[f64]) {
    let got: Vec<f32> = got.into_data().iter().collect();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{what}[{i}]: {a} against {b}"
        );
    }
}

#[test]
fn product_and_gradients_match_float64() {
    let device = Device::default().autodiff();
    for (b, m) in [(1usize, 5usize), (3, 8192 + 37), (2, 3000)] {
        let (zv, wv, gv) = (values(b * m * 2, 1), values(m * 2, 2), values(b * m * 2, 3));
        let z = Tensor::<1>::from_data(TensorData::new(zv.clone(), [zv.len()]), &device)
            .reshape([b, m, 2])
            .require_grad();
        let w = Tensor::<1>::from_data(TensorData::new(wv.clone(), [wv.len()]), &device)
            .reshape([m, 2])
            .require_grad();
        let g = Tensor::<1>::from_data(TensorData::new(gv.clone(), [gv.len()]), &device)
            .reshape([b, m, 2]);
        let y = scale(z.clone(), w.clone()).expect("shapes pair up");
        let grads = (y.clone() * g).sum().backward();
        let (mut ry, mut rdz, mut rdw) = (
            vec![0.0; zv.len()],
            vec![0.0; zv.len()],
            vec![0.0; wv.len()],
        );
        for s in 0..b {
            for i in 0..m {
                let (k, j) = (2 * (s * m + i), 2 * i);
                let (zr, zi) = (zv[k] as f64, zv[k + 1] as f64);
                let (wr, wi) = (wv[j] as f64, wv[j + 1] as f64);
                let (gr, gi) = (gv[k] as f64, gv[k + 1] as f64);
                ry[k] = zr * wr - zi * wi;
                ry[k + 1] = zr * wi + zi * wr;
                rdz[k] = gr * wr + gi * wi;
                rdz[k + 1] = gi * wr - gr * wi;
                rdw[j] += gr * zr + gi * zi;
                rdw[j + 1] += gi * zr - gr * zi;
            }
        }
        let flat3 = |t: Tensor<3>| t.reshape([b * m * 2]);
        check(&format!("y [{b}, {m}]"), flat3(y), &ry);
        check(
            &format!("dz [{b}, {m}]"),
            flat3(z.grad(&grads).unwrap()),
            &rdz,
        );
        check(
            &format!("dw [{b}, {m}]"),
            w.grad(&grads).unwrap().reshape([m * 2]),
            &rdw,
        );
    }
}

#[test]
fn results_do_not_depend_on_threads() {
    let device = Device::default().autodiff();
    let run = |threads: usize| {
        on_threads(threads, || {
            let (b, m) = (5, 20_000);
            let z =
                Tensor::<1>::from_data(TensorData::new(values(b * m * 2, 9), [b * m * 2]), &device)
                    .reshape([b, m, 2])
                    .require_grad();
            let w = Tensor::<1>::from_data(TensorData::new(values(m * 2, 10), [m * 2]), &device)
                .reshape([m, 2])
                .require_grad();
            let y = scale(z.clone(), w.clone()).unwrap();
            let grads = (y.clone() * y.clone()).sum().backward();
            [
                y.inner().reshape([b * m * 2]),
                z.grad(&grads).unwrap().reshape([b * m * 2]),
                w.grad(&grads).unwrap().reshape([m * 2]),
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
fn shapes_that_do_not_pair_up_are_refused() {
    let device = Device::default();
    let e = scale(
        Tensor::<3>::zeros([2, 4, 2], &device),
        Tensor::<2>::zeros([3, 2], &device),
    )
    .expect_err("4 pairs against 3 weights")
    .to_string();
    assert!(e.contains("[2, 4, 2]") && e.contains("[3, 2]"), "{e}");
    let e = scale(
        Tensor::<3>::zeros([2, 4, 3], &device),
        Tensor::<2>::zeros([4, 2], &device),
    )
    .expect_err("not pairs")
    .to_string();
    assert!(e.contains("[B, M, 2]"), "{e}");
}
