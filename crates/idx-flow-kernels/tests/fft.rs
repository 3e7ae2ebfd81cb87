//! The native FFT against a dense DFT in float64, for every kind of input
//! and output, padded and truncated, along every axis; its gradient (the
//! adjoint) through autodiff; and the errors for shapes that do not fit.

use std::f64::consts::TAU;

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_kernels::fft::{FftSpec, fft, transform};

/// A deterministic pseudo-random sequence in [−1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Where value `k` of `count` sits in a spectrum of `n`: both ends put
/// the upper `⌊count/2⌋` values at the end.
fn position(k: usize, count: usize, n: usize, ends: bool) -> usize {
    if ends && k >= count - count / 2 {
        n - count + k
    } else {
        k
    }
}

/// `spec` applied to `x` (logical shape `shape`, interleaved pairs when
/// complex) by the definition, in float64.
fn dense(x: &[f32], shape: &[usize], spec: &FftSpec) -> Vec<f64> {
    let outer: usize = shape[..spec.axis].iter().product();
    let in_len = shape[spec.axis];
    let inner: usize = shape[spec.axis + 1..].iter().product();
    let n = spec.len;
    let sign = if spec.inverse { 1.0 } else { -1.0 };
    let (iw, ow) = (
        if spec.real_input { 1 } else { 2 },
        if spec.real_output { 1 } else { 2 },
    );
    let mut out = vec![0f64; outer * spec.out_len * inner * ow];
    for o in 0..outer {
        for i in 0..inner {
            for k in 0..spec.out_len {
                let (mut re, mut im) = (0f64, 0f64);
                for j in 0..in_len {
                    let at = ((o * in_len + j) * inner + i) * iw;
                    let (a, b) = if spec.real_input {
                        (x[at] as f64, 0.0)
                    } else {
                        (x[at] as f64, x[at + 1] as f64)
                    };
                    let (pj, pk) = (
                        position(j, in_len, n, spec.input_ends),
                        position(k, spec.out_len, n, spec.output_ends),
                    );
                    let t = TAU * ((pj * pk) % n) as f64 / n as f64;
                    let (c, s) = (t.cos(), sign * t.sin());
                    re += a * c - b * s;
                    im += a * s + b * c;
                }
                let at = ((o * spec.out_len + k) * inner + i) * ow;
                out[at] = re * spec.scale as f64;
                if !spec.real_output {
                    out[at + 1] = im * spec.scale as f64;
                }
            }
        }
    }
    out
}

/// The error allowed on sums of `terms` values in [−1, 1) through `spec`.
fn tolerance(terms: usize, spec: FftSpec) -> f64 {
    2e-6 * terms as f64 * (1.0 + (spec.len as f64).log2()) * spec.scale as f64 + 1e-6
}

/// The physical shape of a logical `shape` for an input of kind `real`.
fn physical(shape: &[usize], real: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if !real {
        s.push(2);
    }
    s
}

/// Runs `spec` on a rank-3 logical input through the const-generic API.
fn run(x: Vec<f32>, shape: [usize; 3], spec: FftSpec, device: &Device) -> Tensor<1> {
    let phys = physical(&shape, spec.real_input);
    let flat = |t: Vec<usize>| t.iter().product::<usize>();
    let total = flat(spec.output_shape(&phys).unwrap());
    match (spec.real_input, spec.real_output) {
        (true, true) => {
            let x = Tensor::<3>::from_data(TensorData::new(x, phys), device);
            fft::<3, 3>(x, spec).unwrap().reshape([total])
        }
        (true, false) => {
            let x = Tensor::<3>::from_data(TensorData::new(x, phys), device);
            fft::<3, 4>(x, spec).unwrap().reshape([total])
        }
        (false, true) => {
            let x = Tensor::<4>::from_data(TensorData::new(x, phys), device);
            fft::<4, 3>(x, spec).unwrap().reshape([total])
        }
        (false, false) => {
            let x = Tensor::<4>::from_data(TensorData::new(x, phys), device);
            fft::<4, 4>(x, spec).unwrap().reshape([total])
        }
    }
}

/// The specs tried on a logical shape: every axis, every kind, padded and
/// truncated, both directions, with and without a scale.
fn specs(shape: [usize; 3]) -> Vec<FftSpec> {
    let mut all = Vec::new();
    for (axis, &n) in shape.iter().enumerate() {
        // (len, kept, kept at both ends, input at both ends)
        let cases = [
            (n, n, false, false),
            (n + 3, n + 3, false, false),
            (n + 2, 2, false, false),
            (n, 1, false, false),
            (n + 2, 3.min(n + 2), true, false),
            (n + 3, n + 3, false, true),
            (2 * n + 1, 4.min(2 * n + 1), true, true),
        ];
        for (len, keep, keep_ends, input_ends) in cases {
            for kinds in 0..4 {
                let mut spec = if keep_ends {
                    FftSpec::new(axis, len).keep_ends(keep)
                } else {
                    FftSpec::new(axis, len).keep(keep)
                };
                if input_ends {
                    spec = spec.input_at_ends();
                }
                if kinds & 1 == 1 {
                    spec = spec.real_input();
                }
                if kinds & 2 == 2 {
                    spec = spec.real_output();
                }
                if (axis + kinds) % 2 == 1 {
                    spec = spec.inverse();
                }
                if kinds == 3 {
                    spec = spec.orthonormal();
                }
                all.push(spec);
            }
        }
    }
    all
}

#[test]
fn every_kind_matches_the_dense_transform() {
    let device = Device::default();
    // Prime, composite and power-of-two lengths, long enough for Bluestein
    // (97) and for several rows per parallel task.
    for shape in [[3, 12, 5], [2, 97, 4], [4, 7, 64], [1, 256, 3], [6, 1, 2]] {
        for (t, spec) in specs(shape).into_iter().enumerate() {
            let count: usize =
                shape.iter().product::<usize>() * if spec.real_input { 1 } else { 2 };
            let x = values(count, t as u64);
            let want = dense(&x, &shape, &spec);
            let got: Vec<f32> = run(x, shape, spec, &device).into_data().iter().collect();
            assert_eq!(got.len(), want.len(), "{spec:?} on {shape:?}");
            // float32 rounding over log₂ n stages of sums of up to n values in [−1, 1).
            let tol = tolerance(shape[spec.axis], spec);
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= tol,
                    "{spec:?} on {shape:?}, value {j}: {g} against {w}"
                );
            }
        }
    }
}

#[test]
fn forward_then_inverse_is_the_identity() {
    let device = Device::default();
    for n in [1, 2, 48, 768, 1000, 1021] {
        let x = values(4 * n * 2, n as u64);
        let t = Tensor::<3>::from_data(TensorData::new(x.clone(), [4, n, 2]), &device);
        let fwd = fft::<3, 3>(t, FftSpec::new(1, n).orthonormal()).unwrap();
        let back = fft::<3, 3>(fwd, FftSpec::new(1, n).inverse().orthonormal()).unwrap();
        let back: Vec<f32> = back.into_data().iter().collect();
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-5, "n = {n}: {a} against {b}");
        }
    }
}

#[test]
fn the_gradient_is_the_adjoint() {
    // For a linear map L, the gradient of Σ w·L(x) is Lᵀw: check
    // ⟨w, L x⟩ = ⟨Lᵀ w, x⟩ and Lᵀ w against the dense adjoint.
    let device = Device::default().autodiff();
    let shape = [2, 10, 3];
    for (t, spec) in specs(shape).into_iter().enumerate() {
        let phys = physical(&shape, spec.real_input);
        let out_phys = spec.output_shape(&phys).unwrap();
        let x = values(phys.iter().product(), 100 + t as u64);
        let w = values(out_phys.iter().product(), 200 + t as u64);
        let xt =
            Tensor::<1>::from_data(TensorData::new(x.clone(), [x.len()]), &device).require_grad();
        let y = run_tracked(xt.clone(), &phys, spec);
        let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), &device);
        let grads = (y * wt).sum().backward();
        let dx: Vec<f32> = xt.grad(&grads).unwrap().into_data().iter().collect();
        // The adjoint by the definition: transform w the other way.
        let mut out_logical = out_phys.clone();
        if !spec.real_output {
            out_logical.pop();
        }
        let want = dense(&w, &out_logical, &spec.adjoint(shape[spec.axis]));
        for (j, (g, e)) in dx.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - e).abs() <= tolerance(spec.out_len, spec),
                "{spec:?}, gradient {j}: {g} against {e}"
            );
        }
    }
}

/// `spec` on a flat tracked tensor reshaped to `phys`, flattened again.
fn run_tracked(x: Tensor<1>, phys: &[usize], spec: FftSpec) -> Tensor<1> {
    let total: usize = spec.output_shape(phys).unwrap().iter().product();
    match phys.len() {
        3 => {
            let x = x.reshape([phys[0], phys[1], phys[2]]);
            if spec.real_output {
                fft::<3, 3>(x, spec).unwrap().reshape([total])
            } else {
                fft::<3, 4>(x, spec).unwrap().reshape([total])
            }
        }
        _ => {
            let x = x.reshape([phys[0], phys[1], phys[2], phys[3]]);
            if spec.real_output {
                fft::<4, 3>(x, spec).unwrap().reshape([total])
            } else {
                fft::<4, 4>(x, spec).unwrap().reshape([total])
            }
        }
    }
}

#[test]
fn shapes_that_do_not_fit_are_errors() {
    let device = Device::default();
    let x = Tensor::<3>::zeros([2, 8, 3], &device);
    // A complex input needs its trailing pair axis.
    let e = fft::<3, 3>(x.clone(), FftSpec::new(1, 8)).unwrap_err();
    assert!(e.to_string().contains("(re, im)"), "{e}");
    // More input values than the transform length.
    let e = fft::<3, 4>(x.clone(), FftSpec::new(1, 4).real_input()).unwrap_err();
    assert!(e.to_string().contains("length 4"), "{e}");
    // A missing axis.
    let e = fft::<3, 4>(x.clone(), FftSpec::new(3, 4).real_input()).unwrap_err();
    assert!(e.to_string().contains("axis 3"), "{e}");
    // The wrong output rank.
    let e = fft::<3, 3>(x, FftSpec::new(1, 8).real_input()).unwrap_err();
    assert!(e.to_string().contains("Tensor<3>"), "{e}");
}

#[test]
fn the_slice_transform_refuses_sizes_that_do_not_match() {
    let spec = FftSpec::new(0, 4).real_input();
    // 2·3·1 real values expected, 5 given.
    assert!(transform(&[0.0; 5], 2, 3, 1, &spec).is_err());
    // Five values along an axis of a length-4 transform.
    assert!(transform(&[0.0; 10], 2, 5, 1, &spec).is_err());
    let y = transform(&[1.0, 0.0, 0.0], 1, 3, 1, &spec).expect("valid sizes");
    // A unit impulse has a flat spectrum: 4 (re, im) pairs of (1, 0).
    assert_eq!(y, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
}
