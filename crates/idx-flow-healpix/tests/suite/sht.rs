//! The spherical-harmonic transforms give the same bits on any thread count:
//! the work is split by order and by ring, never reduced in a thread-dependent
//! order.

use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::sht::{Alm, Complex64, SphericalTransform};
use idx_flow_testing::rng::Rng;
use idx_flow_testing::threads::on_threads;

fn alm_bits(alm: &Alm) -> Vec<(u64, u64)> {
    alm.values()
        .iter()
        .map(|c| (c.re.to_bits(), c.im.to_bits()))
        .collect()
}

#[test]
fn transforms_are_bitwise_independent_of_the_thread_count() {
    // nside 128 has 511 rings: 256 ring pairs, more than one chunk of them
    // (128 pairs, 4 groups of 32); mmax < lmax too.
    let (nside, lmax, mmax) = (128, 100, 80);
    let plan = SphericalTransform::new(nside, lmax, Some(mmax)).unwrap();
    let mut rng = Rng::seeded(3);
    let map: Vec<f64> = rng
        .normal_vec(12 * nside as usize * nside as usize)
        .into_iter()
        .map(f64::from)
        .collect();
    for ordering in [Ordering::Ring, Ordering::Nested] {
        let run = || {
            let alm = plan.map2alm(&map, ordering, 3).unwrap();
            let back = plan.alm2map(&alm, ordering).unwrap();
            (
                alm_bits(&alm),
                back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            )
        };
        let one = on_threads(1, run);
        let two = on_threads(2, run);
        assert!(
            one.0.iter().any(|&(re, _)| re != 0),
            "{ordering:?}: all-zero alm"
        );
        assert_eq!(
            one.0, two.0,
            "{ordering:?}: map2alm differs between 1 and 2 threads"
        );
        assert_eq!(
            one.1, two.1,
            "{ordering:?}: alm2map differs between 1 and 2 threads"
        );
    }
}

/// A random map of `nside` (RING or NESTED alike: the values are iid).
fn random_map(rng: &mut Rng, nside: u32) -> Vec<f64> {
    rng.normal_vec(12 * nside as usize * nside as usize)
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn spin_transforms_are_bitwise_independent_of_the_thread_count() {
    // Two chunks of ring pairs, mmax < lmax, spin 2 and an odd spin.
    let (nside, lmax, mmax) = (128, 100, 80);
    let plan = SphericalTransform::new(nside, lmax, Some(mmax)).unwrap();
    let mut rng = Rng::seeded(4);
    let (q, u) = (random_map(&mut rng, nside), random_map(&mut rng, nside));
    for (spin, ordering) in [(2, Ordering::Ring), (3, Ordering::Nested)] {
        let run = || {
            let [e, b] = plan.map2alm_spin([&q, &u], spin, ordering, 2).unwrap();
            let back = plan.alm2map_spin([&e, &b], spin, ordering).unwrap();
            let bits = |m: &[f64]| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (alm_bits(&e), alm_bits(&b), bits(&back[0]), bits(&back[1]))
        };
        let one = on_threads(1, run);
        let two = on_threads(2, run);
        assert!(
            one.0.iter().any(|&(re, _)| re != 0),
            "spin {spin}: all-zero E"
        );
        assert!(
            one == two,
            "spin {spin} {ordering:?}: 1 and 2 threads differ"
        );
    }
}

/// The analysis without its `4π/npix` weight is the adjoint of the
/// synthesis: `Σ_p (Q·q + U·u) = Σ_lm c_m·Re(E·conj(Ẽ) + B·conj(B̃))` with
/// `c_0 = 1`, `c_m = 2` (the negative orders), `[Q, U]` synthesised from
/// `[E, B]` and `[Ẽ, B̃]` from `[q, u]` by `alm2map_spin_adjoint`, which is
/// also checked to be `map2alm_spin` (iter 0) over the weight. Over several chunks of
/// rings, at degrees where the starting values are scaled.
#[test]
fn spin_analysis_is_the_adjoint_of_the_synthesis() {
    let (nside, lmax) = (128, 300);
    let plan = SphericalTransform::new(nside, lmax, None).unwrap();
    let mut rng = Rng::seeded(5);
    let (q, u) = (random_map(&mut rng, nside), random_map(&mut rng, nside));
    let weight = 4.0 * std::f64::consts::PI / q.len() as f64;
    for spin in [1, 2] {
        let mut random_alm = || {
            let mut alm = Alm::zeros(lmax, lmax).unwrap();
            let mut values = rng.normal_vec(2 * Alm::size(lmax, lmax)).into_iter();
            for l in 0..=lmax {
                for m in 0..=l {
                    let (re, im) = (values.next().unwrap(), values.next().unwrap());
                    let im = if m == 0 { 0.0 } else { im as f64 };
                    alm.set(l, m, Complex64::new(re as f64, im)).unwrap();
                }
            }
            alm
        };
        let (e, b) = (random_alm(), random_alm());
        let [big_q, big_u] = plan.alm2map_spin([&e, &b], spin, Ordering::Ring).unwrap();
        let [e2, b2] = plan
            .alm2map_spin_adjoint([&q, &u], spin, Ordering::Ring)
            .unwrap();
        let [e3, _] = plan
            .map2alm_spin([&q, &u], spin, Ordering::Ring, 0)
            .unwrap();
        for (a, b) in e2.values().iter().zip(e3.values()) {
            assert!((a * weight - b).norm() <= 1e-12 * b.norm().max(1e-3));
        }
        let maps: f64 = big_q.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>()
            + big_u.iter().zip(&u).map(|(a, b)| a * b).sum::<f64>();
        let mut coefficients = 0.0;
        for l in 0..=lmax {
            for m in 0..=l {
                let c = if m == 0 { 1.0 } else { 2.0 };
                let pair =
                    |x: &Alm, y: &Alm| (x.get(l, m).unwrap() * y.get(l, m).unwrap().conj()).re;
                coefficients += c * (pair(&e, &e2) + pair(&b, &b2));
            }
        }
        let err = (maps - coefficients).abs() / maps.abs();
        assert!(
            err < 1e-10,
            "spin {spin}: {maps} vs {coefficients} ({err:e})"
        );
    }
}

#[test]
fn spin_transforms_refuse_what_they_cannot_do() {
    let plan = SphericalTransform::new(4, 8, None).unwrap();
    let map = vec![0.0; 192];
    let alm = Alm::zeros(8, 8).unwrap();
    let message = |e: idx_flow_healpix::Error| e.to_string();
    let zero = plan
        .map2alm_spin([&map, &map], 0, Ordering::Ring, 0)
        .unwrap_err();
    assert!(message(zero).contains("spin 0"), "spin 0 refused by name");
    let high = plan
        .alm2map_spin([&alm, &alm], 9, Ordering::Ring)
        .unwrap_err();
    assert!(message(high).contains("spin 9"));
    let short = plan
        .map2alm_spin([&map, &map[..100]], 2, Ordering::Ring, 0)
        .unwrap_err();
    assert!(message(short).contains("100 pixels"));
    let other = Alm::zeros(7, 7).unwrap();
    let sizes = plan
        .alm2map_spin([&alm, &other], 2, Ordering::Ring)
        .unwrap_err();
    assert!(message(sizes).contains("lmax 7"));
}

/// healpy's `UNSEEN` pixels count as zero in the analyses, scalar and spin,
/// in both orderings and through the Jacobi steps' residuals.
#[test]
fn analyses_read_unseen_as_zero() {
    let plan = SphericalTransform::new(8, 16, None).unwrap();
    let mut rng = Rng::seeded(6);
    let (mut q, u) = (random_map(&mut rng, 8), random_map(&mut rng, 8));
    let mut zeroed = q.clone();
    for p in (0..q.len()).step_by(7) {
        q[p] = idx_flow_healpix::sht::UNSEEN;
        zeroed[p] = 0.0;
    }
    for ordering in [Ordering::Ring, Ordering::Nested] {
        let masked = plan.map2alm_spin([&q, &u], 2, ordering, 1).unwrap();
        let zero = plan.map2alm_spin([&zeroed, &u], 2, ordering, 1).unwrap();
        assert_eq!(alm_bits(&masked[0]), alm_bits(&zero[0]), "{ordering:?}");
        assert_eq!(alm_bits(&masked[1]), alm_bits(&zero[1]), "{ordering:?}");
        let masked = plan.map2alm(&q, ordering, 2).unwrap();
        let zero = plan.map2alm(&zeroed, ordering, 2).unwrap();
        assert_eq!(alm_bits(&masked), alm_bits(&zero), "{ordering:?}");
    }
}
