//! The classical baselines on maps whose answer is known: a band-limited
//! field survives its truncation, a field constant on coarse pixels survives
//! pooling where the interpolation is exact, and masked values change nothing.

use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_train::data::Sample;
use idx_flow_train::train::baselines::{
    evaluate, pooled_interpolated, pooled_nside, sh_truncation, truncation_lmax,
};
use idx_flow_train::train::{BaselineMethod, psnr};

/// Two channels on NESTED nside 16: `1 + x + z/2` (degree 1) and `x·y − z²`
/// (degree 2), interleaved `[N, C]`.
/// `len` values equal to `value`, none masked.
fn filled(value: f32, len: usize) -> Sample {
    Sample {
        values: vec![value; len],
        valid: None,
    }
}

fn smooth_sample(grid: HealpixGrid) -> Sample {
    let values = grid
        .centers()
        .iter()
        .flat_map(|p| {
            [
                (1.0 + p[0] + 0.5 * p[2]) as f32,
                (p[0] * p[1] - p[2] * p[2]) as f32,
            ]
        })
        .collect();
    Sample {
        values,
        valid: None,
    }
}

#[test]
fn truncation_keeps_a_band_limited_field_and_reports_its_size() {
    let grid = HealpixGrid::nested(16).unwrap();
    let sample = smooth_sample(grid);
    let out = sh_truncation(grid, 2, std::slice::from_ref(&sample), 4).unwrap();
    // The f32 samples carry ~1e-7 rounding; the iterated analysis recovers
    // the degree ≤ 2 field to about that.
    let worst = out[0]
        .iter()
        .zip(&sample.values)
        .map(|(a, b)| (a - *b as f64).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-4, "worst error {worst}");
    // Degree 1 loses the quadrupole channel.
    let b = evaluate(BaselineMethod::ShTruncation, 1, grid, 2, &[sample], 1.0).unwrap();
    assert_eq!((b.size, b.values), (1, 2 * 4));
    assert_eq!(b.compression_ratio, (3072 * 2) as f64 / 8.0);
    assert!(
        b.heldout_psnr_db < 30.0 && b.heldout_psnr_db.is_finite(),
        "{b:?}"
    );
    assert_eq!(b.heldout_psnr_db, psnr(b.heldout_mse, 1.0));
}

#[test]
fn pooling_averages_children_and_interpolates_back() {
    let grid = HealpixGrid::nested(8).unwrap();
    let constant = filled(0.25, 768);
    let out = pooled_interpolated(grid, 1, std::slice::from_ref(&constant), 2).unwrap();
    assert!(out[0].iter().all(|v| (v - 0.25).abs() < 1e-12));
    // A field varying inside coarse pixels is not kept exactly.
    let sample = smooth_sample(grid);
    let b = evaluate(
        BaselineMethod::PooledInterpolated,
        4,
        grid,
        2,
        &[sample],
        1.0,
    )
    .unwrap();
    assert_eq!((b.size, b.values), (4, 2 * 192));
    assert!(b.heldout_mse > 1e-6 && b.heldout_psnr_db > 15.0, "{b:?}");
}

#[test]
fn masked_values_change_no_baseline() {
    let grid = HealpixGrid::nested(8).unwrap();
    let clean = smooth_sample(grid);
    // Every 5th value masked, once as zero and once as garbage.
    let valid: Vec<bool> = (0..clean.values.len()).map(|i| i % 5 != 0).collect();
    let masked = |fill: f32| Sample {
        values: clean
            .values
            .iter()
            .enumerate()
            .map(|(i, &v)| if valid[i] { v } else { fill })
            .collect(),
        valid: Some(valid.clone()),
    };
    for method in [
        BaselineMethod::ShTruncation,
        BaselineMethod::PooledInterpolated,
    ] {
        let size = if method == BaselineMethod::ShTruncation {
            6
        } else {
            2
        };
        let a = evaluate(method, size, grid, 2, &[masked(0.0)], 1.0).unwrap();
        let b = evaluate(method, size, grid, 2, &[masked(1e6)], 1.0).unwrap();
        assert_eq!(a, b, "{method:?}");
        let full = evaluate(method, size, grid, 2, std::slice::from_ref(&clean), 1.0).unwrap();
        assert_ne!(
            a.heldout_mse, full.heldout_mse,
            "{method:?}: the mask was ignored"
        );
    }
}

#[test]
fn sizes_follow_the_value_counts() {
    // The table: latent 6144 values of RGB at nside 64 → lmax 44
    // (6075 values), pooled to nside 16 (9216 values).
    assert_eq!(truncation_lmax(6144, 3, 64), Some(44));
    assert_eq!(truncation_lmax(3 * 45 * 45, 3, 64), Some(44));
    assert_eq!(truncation_lmax(3 * 45 * 45 - 1, 3, 64), Some(43));
    assert_eq!(truncation_lmax(2, 3, 64), None);
    assert_eq!(truncation_lmax(1 << 30, 1, 8), Some(23));
    assert_eq!(pooled_nside(6144, 3, 64), Some(16));
    assert_eq!(pooled_nside(100, 1, 64), Some(4)); // 192 values beat 48
    assert_eq!(pooled_nside(100, 1, 1), None);
}

#[test]
fn samples_and_sizes_that_do_not_fit_are_errors() {
    let grid = HealpixGrid::nested(8).unwrap();
    let short = filled(0.0, 700);
    let e = evaluate(BaselineMethod::ShTruncation, 4, grid, 1, &[short], 1.0).unwrap_err();
    assert!(e.to_string().contains("768 values"), "{e}");
    let flags = Sample {
        values: vec![0.0; 768],
        valid: Some(vec![true; 10]),
    };
    let e = pooled_interpolated(grid, 1, &[flags], 2).unwrap_err();
    assert!(e.to_string().contains("10 flags"), "{e}");
    let fine = filled(0.0, 768);
    let e = pooled_interpolated(grid, 1, std::slice::from_ref(&fine), 8).unwrap_err();
    assert!(e.to_string().contains("expected below 8"), "{e}");
    assert!(evaluate(BaselineMethod::ShTruncation, 24, grid, 1, &[fine], 1.0).is_err());
}
