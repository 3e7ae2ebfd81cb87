//! Pixel geometry against healpy (`healpix_geometry*.safetensors`).

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_healpix::io::SafetensorsFile;

use idx_flow_testing::fixtures;

const ANGLE_TOL: f64 = 1e-12;

/// `(file, nside)` for every `nside{N}.ring.theta` in every geometry file.
fn cases() -> Vec<(SafetensorsFile, Vec<u32>)> {
    fixtures::open_all("healpix_geometry")
        .into_iter()
        .map(|f| {
            let nsides = fixtures::prefixes(&f, ".ring.theta")
                .iter()
                .map(|p| {
                    p.trim_start_matches("nside")
                        .parse()
                        .expect("nside{N} prefix")
                })
                .collect();
            (f, nsides)
        })
        .collect()
}

fn orderings(f: &SafetensorsFile, nside: u32) -> Vec<(Ordering, &'static str)> {
    let mut o = vec![(Ordering::Ring, "ring")];
    if f.contains(&format!("nside{nside}.nest.theta")) {
        o.push((Ordering::Nested, "nest"));
    }
    o
}

#[test]
fn pixel_centres_equal_healpy() {
    let mut checked = 0;
    for (f, nsides) in cases() {
        for nside in nsides {
            for (ordering, tag) in orderings(&f, nside) {
                let grid = HealpixGrid::new(nside, ordering).unwrap();
                let (theta, _) = f.f64(&format!("nside{nside}.{tag}.theta")).unwrap();
                let (phi, _) = f.f64(&format!("nside{nside}.{tag}.phi")).unwrap();
                assert_eq!(theta.len() as u64, grid.npix());
                for p in 0..grid.npix() {
                    let (t, ph) = grid.pix2ang(p).unwrap();
                    let i = p as usize;
                    assert!(
                        (t - theta[i]).abs() <= ANGLE_TOL,
                        "{grid} pixel {p}: theta {t} vs {}",
                        theta[i]
                    );
                    // Longitude wraps at 2π.
                    let dphi = (ph - phi[i]).rem_euclid(std::f64::consts::TAU);
                    let dphi = dphi.min(std::f64::consts::TAU - dphi);
                    assert!(
                        dphi <= ANGLE_TOL,
                        "{grid} pixel {p}: phi {ph} vs {}",
                        phi[i]
                    );
                    let v = grid.pix2vec(p).unwrap();
                    assert_eq!(grid.vec2pix(v).unwrap(), p);
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no grid in the fixture");
}

#[test]
fn ring_nested_conversion_equals_healpy() {
    let mut checked = 0;
    for (f, nsides) in cases() {
        for nside in nsides {
            let name = format!("nside{nside}.ring2nest");
            if !f.contains(&name) {
                continue;
            }
            let (r2n, _) = f.i64(&name).unwrap();
            let ring = HealpixGrid::ring(nside).unwrap();
            let nest = HealpixGrid::nested(nside).unwrap();
            for (p, &n) in r2n.iter().enumerate() {
                assert_eq!(
                    ring.to_nested(p as u64).unwrap() as i64,
                    n,
                    "nside {nside} ring {p}"
                );
                assert_eq!(
                    nest.to_ring(n as u64).unwrap(),
                    p as u64,
                    "nside {nside} nest {n}"
                );
                assert_eq!(
                    idx_flow_healpix::geometry::ring2nest(nside, p as u64).unwrap() as i64,
                    n
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "no grid in the fixture");
}

#[test]
fn neighbours_equal_healpy() {
    let mut checked = 0;
    for (f, nsides) in cases() {
        for nside in nsides {
            for (ordering, tag) in orderings(&f, nside) {
                let grid = HealpixGrid::new(nside, ordering).unwrap();
                let (nb, shape) = f.i64(&format!("nside{nside}.{tag}.neighbours")).unwrap();
                assert_eq!(shape, vec![grid.npix() as usize, 8]);
                let mut missing = 0;
                for p in 0..grid.npix() {
                    let ours = grid.neighbours(p).unwrap();
                    for s in 0..8 {
                        let want = nb[p as usize * 8 + s];
                        let got = ours[s].map_or(-1, |q| q as i64);
                        assert_eq!(got, want, "{grid} pixel {p} slot {s}");
                        missing += (want < 0) as usize;
                    }
                }
                if nside >= 2 {
                    assert_eq!(missing, 24, "{grid}: 24 pixels lack one neighbour");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no grid in the fixture");
}

#[test]
fn ang2pix_equals_healpy() {
    let mut checked = 0;
    for (f, nsides) in cases() {
        for nside in nsides {
            let (theta, _) = f.f64(&format!("nside{nside}.query.theta")).unwrap();
            let (phi, _) = f.f64(&format!("nside{nside}.query.phi")).unwrap();
            for (ordering, tag) in [(Ordering::Ring, "ring"), (Ordering::Nested, "nest")] {
                let name = format!("nside{nside}.query.{tag}_pix");
                if !f.contains(&name) {
                    continue;
                }
                let (want, _) = f.i64(&name).unwrap();
                let grid = HealpixGrid::new(nside, ordering).unwrap();
                for i in 0..theta.len() {
                    assert_eq!(
                        grid.ang2pix(theta[i], phi[i]).unwrap() as i64,
                        want[i],
                        "{grid} direction ({}, {})",
                        theta[i],
                        phi[i]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no grid in the fixture");
}
