//! The spherical-harmonic transforms give the same bits on any thread count:
//! the work is split by order and by ring, never reduced in a thread-dependent
//! order.

use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::sht::{Alm, SphericalTransform};
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
