//! The slice kernels against a plain loop, and their refusals.

use idx_flow_gather::{
    GatherError, GatherSizes, ReverseGraph, contract_forward, contract_grad_input,
    contract_grad_kernel, sum_forward, sum_grad_input,
};

/// A small deterministic graph and values.
fn case() -> (GatherSizes, Vec<i64>, Vec<f32>, Vec<f32>, Vec<f32>, usize) {
    let s = GatherSizes {
        batch: 2,
        n_in: 7,
        channels: 3,
        n_out: 5,
        k: 3,
    };
    let idx: Vec<i64> = (0..15).map(|e| (e * 5 + 2) % 7).collect();
    let w: Vec<f32> = (0..15).map(|e| 0.1 + e as f32 * 0.05).collect();
    let x: Vec<f32> = (0..42).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let f = 4;
    let kernel: Vec<f32> = (0..9 * f)
        .map(|i| ((i * 3) % 7) as f32 * 0.25 - 0.5)
        .collect();
    (s, idx, w, x, kernel, f)
}

#[test]
fn kernels_equal_a_plain_loop() {
    let (s, idx, w, x, kernel, f) = case();
    let (c, k) = (s.channels, s.k);
    let y = contract_forward(&x, &idx, Some(&w), &kernel, None, s, f).unwrap();
    let dy: Vec<f32> = (0..s.batch * s.n_out * f)
        .map(|i| (i % 5) as f32 - 2.0)
        .collect();
    let mut y_ref = vec![0f32; y.len()];
    let mut dx_ref = vec![0f32; x.len()];
    let mut dk_ref = vec![0f32; kernel.len()];
    for b in 0..s.batch {
        for p in 0..s.n_out {
            for j in 0..k {
                let e = p * k + j;
                let i = idx[e] as usize;
                for ch in 0..c {
                    let xv = w[e] * x[(b * s.n_in + i) * c + ch];
                    for o in 0..f {
                        let kv = kernel[(j * c + ch) * f + o];
                        let g = dy[(b * s.n_out + p) * f + o];
                        y_ref[(b * s.n_out + p) * f + o] += xv * kv;
                        dx_ref[(b * s.n_in + i) * c + ch] += w[e] * kv * g;
                        dk_ref[(j * c + ch) * f + o] += xv * g;
                    }
                }
            }
        }
    }
    let close = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .all(|(u, v)| (u - v).abs() <= 1e-4 * (1.0 + v.abs()))
    };
    assert!(close(&y, &y_ref));
    let rev = ReverseGraph::checked(&idx, s.n_in, k).unwrap();
    let dx = contract_grad_input(&dy, &rev.offsets, &rev.edges, Some(&w), &kernel, s, f).unwrap();
    assert!(close(&dx, &dx_ref));
    let dk = contract_grad_kernel(&x, &idx, Some(&w), &dy, s, f).unwrap();
    assert!(close(&dk, &dk_ref));

    // gather-sum: the contraction with an identity kernel per slot.
    let ys = sum_forward(&x, &idx, &w, s).unwrap();
    let dys: Vec<f32> = (0..s.batch * s.n_out * c).map(|i| (i % 3) as f32).collect();
    let dxs = sum_grad_input(&dys, &rev.offsets, &rev.edges, &w, s).unwrap();
    let mut ys_ref = vec![0f32; ys.len()];
    let mut dxs_ref = vec![0f32; x.len()];
    for b in 0..s.batch {
        for e in 0..s.n_out * k {
            let (p, i) = (e / k, idx[e] as usize);
            for ch in 0..c {
                ys_ref[(b * s.n_out + p) * c + ch] += w[e] * x[(b * s.n_in + i) * c + ch];
                dxs_ref[(b * s.n_in + i) * c + ch] += w[e] * dys[(b * s.n_out + p) * c + ch];
            }
        }
    }
    assert!(close(&ys, &ys_ref));
    assert!(close(&dxs, &dxs_ref));
}

#[test]
fn arguments_that_do_not_fit_are_errors_naming_them() {
    let (s, mut idx, w, x, kernel, f) = case();
    let err = contract_forward(&x[1..], &idx, None, &kernel, None, s, f).unwrap_err();
    assert!(
        matches!(
            err,
            GatherError::Length {
                what: "x",
                got: 41,
                expected: 42,
                ..
            }
        ),
        "{err}"
    );
    let err = contract_forward(&x, &idx, Some(&w[1..]), &kernel, None, s, f).unwrap_err();
    assert!(
        err.to_string()
            .contains("edge weights holds 14 values, expected 15"),
        "{err}"
    );
    let err = contract_forward(&x, &idx, None, &kernel, Some(&[0.0; 3]), s, f).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("bias holds 3 values, expected 4"),
        "{err}"
    );
    idx[9] = 7;
    let err = contract_grad_kernel(&x, &idx, None, &[0.0; 40], s, f).unwrap_err();
    assert_eq!(err.to_string(), "indices[9] is 7, expected a value in 0..7");
    assert!(ReverseGraph::checked(&idx, 7, 3).is_err());
    idx[9] = 1;
    let rev = ReverseGraph::checked(&idx, 7, 3).unwrap();
    let mut offsets = rev.offsets.clone();
    offsets.swap(2, 3);
    if offsets[2] != offsets[3] {
        let err = sum_grad_input(&[0.0; 30], &offsets, &rev.edges, &w, s).unwrap_err();
        assert!(matches!(err, GatherError::Offsets(_)), "{err}");
    }
    let mut edges = rev.edges.clone();
    edges[0] = 15;
    let err =
        contract_grad_input(&[0.0; 40], &rev.offsets, &edges, None, &kernel, s, f).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reverse-graph edges[0] is 15, expected a value in 0..15"
    );
    // Empty sizes give empty results, not a panic.
    let empty = GatherSizes { channels: 0, ..s };
    assert!(sum_forward(&[], &idx, &w, empty).unwrap().is_empty());
    assert!(
        contract_forward(&x, &idx, None, &kernel[..0], None, s, 0)
            .unwrap()
            .is_empty()
    );
}
