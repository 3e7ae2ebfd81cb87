//! Pixel geometry against healpy, every grid of every
//! `healpix_geometry*.safetensors` file as its own tests
//! (`healpy::FILE::nsideN::CHECK`): pixel centres, RING <-> NESTED,
//! neighbours, the pixel of random directions, and bilinear interpolation
//! weights (`::interpolation`, where a file holds `nside{N}.interp.*`). The nsides and orderings
//! come from the files, so any fixture set of the generators runs
//! (`IDX_FLOW_FIXTURES`).
//!
//! idx_flow's k-nearest graphs and weights, every tag of
//! `connection_indices.safetensors` as its own tests
//! (`idx_flow_graph::TAG::knn`, `::weights`).
//!
//! healpy's `map2alm` (each `iter` of the manifest) and `alm2map`, every
//! case of `sht_manifest.json` (`healpy_sht::CASE::map2alm_iterI`, `::alm2map`),
//! with the spin-weighted and polarised transforms where the case has them
//! (`::map2alm_spinS`, `::alm2map_spinS`, `::map2alm_pol_iterI`, `::alm2map_pol`).
//!
//! `cargo test -p idx-flow-healpix --test fixture_cases nside8`

use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_healpix::io::SafetensorsFile;

mod graphs;
mod sht;

use std::sync::Arc;

use idx_flow_testing::{fixtures, trials};

const ANGLE_TOL: f64 = 1e-12;

/// `(file name, file, nsides)` for every `nside{N}.ring.theta` of every geometry file.
fn cases() -> Vec<(String, SafetensorsFile, Vec<u32>)> {
    fixtures::open_all_named("healpix_geometry")
        .into_iter()
        .map(|(name, f)| {
            let nsides = fixtures::prefixes(&f, ".ring.theta")
                .iter()
                .map(|p| {
                    p.trim_start_matches("nside")
                        .parse()
                        .expect("nside{N} prefix")
                })
                .collect();
            (name, f, nsides)
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

fn pixel_centres_equal_healpy(f: &SafetensorsFile, nside: u32) {
    // healpy's own arithmetic (behind idx_flow-ordered graphs): equal bits.
    let (theta, _) = f.f64(&format!("nside{nside}.ring.theta")).unwrap();
    let (phi, _) = f.f64(&format!("nside{nside}.ring.phi")).unwrap();
    for (p, (t, ph)) in theta.iter().zip(&phi).enumerate() {
        let ours = idx_flow_healpix::graphs::healpy_pix2ang_ring(nside as u64, p as u64);
        assert_eq!(
            ours,
            (*t, *ph),
            "nside {nside} RING pixel {p}: healpy's bits"
        );
    }
    for (ordering, tag) in orderings(f, nside) {
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
    }
}

fn ring_nested_conversion_equals_healpy(f: &SafetensorsFile, nside: u32) {
    let name = format!("nside{nside}.ring2nest");
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
}

fn neighbours_equal_healpy(f: &SafetensorsFile, nside: u32) {
    for (ordering, tag) in orderings(f, nside) {
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
    }
}

fn ang2pix_equals_healpy(f: &SafetensorsFile, nside: u32) {
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
    }
}

/// `(pixel, weight)` with the weights of a repeated pixel summed and zero
/// weights dropped: at a pixel centre a floor may fall either way and pick
/// another zero-weight neighbour, which changes nothing interpolated.
fn weight_by_pixel(pixels: &[i64], weights: &[f64]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for (&p, &w) in pixels.iter().zip(weights) {
        match out.iter_mut().find(|(q, _)| *q == p) {
            Some(slot) => slot.1 += w,
            None => out.push((p, w)),
        }
    }
    out.retain(|(_, w)| w.abs() > 1e-13);
    out.sort_by_key(|&(p, _)| p);
    out
}

/// healpy's `get_interp_weights` at every direction of `nside{N}.interp.*`,
/// in RING and, where the grid has it, NESTED order (its pixels taken back
/// to RING).
fn interpolation_equals_healpy(f: &SafetensorsFile, nside: u32) {
    let (theta, _) = f.f64(&format!("nside{nside}.interp.theta")).unwrap();
    let (phi, _) = f.f64(&format!("nside{nside}.interp.phi")).unwrap();
    let (pixels, _) = f.i64(&format!("nside{nside}.interp.ring_pix")).unwrap();
    let (weights, _) = f.f64(&format!("nside{nside}.interp.weights")).unwrap();
    assert_eq!(pixels.len(), 4 * theta.len());
    let mut grids = vec![HealpixGrid::ring(nside).unwrap()];
    grids.extend(HealpixGrid::nested(nside).ok());
    for grid in grids {
        for i in 0..theta.len() {
            let (p, w) = grid.interpolation_weights(theta[i], phi[i]).unwrap();
            let ring: Vec<i64> = p.iter().map(|&q| grid.to_ring(q).unwrap() as i64).collect();
            let ours = weight_by_pixel(&ring, &w);
            let want = weight_by_pixel(&pixels[4 * i..4 * i + 4], &weights[4 * i..4 * i + 4]);
            let same = ours.len() == want.len()
                && ours
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= 1e-12);
            assert!(
                same,
                "{grid} direction ({}, {}): {ours:?} vs healpy {want:?}",
                theta[i], phi[i]
            );
        }
    }
}

fn main() {
    type Check = fn(&SafetensorsFile, u32);
    let checks: [(&str, Check); 4] = [
        ("pixel_centres", pixel_centres_equal_healpy),
        ("ring_nested", ring_nested_conversion_equals_healpy),
        ("neighbours", neighbours_equal_healpy),
        ("ang2pix", ang2pix_equals_healpy),
    ];
    let mut all = Vec::new();
    for (name, file, nsides) in cases() {
        let file = Arc::new(file);
        for nside in nsides {
            for (check, run) in checks {
                // RING <-> NESTED exists only where healpy has NESTED grids.
                if check == "ring_nested" && !file.contains(&format!("nside{nside}.ring2nest")) {
                    continue;
                }
                let file = file.clone();
                all.push(trials::case(
                    format!("healpy::{name}::nside{nside}::{check}"),
                    move || run(&file, nside),
                ));
            }
        }
    }
    for (name, file) in fixtures::open_all_named("healpix_geometry") {
        let file = Arc::new(file);
        for prefix in fixtures::prefixes(&file, ".interp.theta") {
            let nside: u32 = prefix
                .trim_start_matches("nside")
                .parse()
                .expect("nside{N} prefix");
            let file = file.clone();
            all.push(trials::case(
                format!("healpy::{name}::nside{nside}::interpolation"),
                move || interpolation_equals_healpy(&file, nside),
            ));
        }
    }
    let graphs = Arc::new(fixtures::open("connection_indices.safetensors"));
    for (tag, ni, no, k) in graphs::tags(&graphs) {
        let (file, tag2) = (graphs.clone(), tag.clone());
        all.push(trials::case(
            format!("idx_flow_graph::{tag}::knn"),
            move || graphs::knn_case(&file, &tag2, ni, no, k),
        ));
        let (file, tag2) = (graphs.clone(), tag.clone());
        all.push(trials::case(
            format!("idx_flow_graph::{tag}::knn_idx_flow_order"),
            move || graphs::knn_idx_flow_case(&file, &tag2, ni, no, k),
        ));
        let file = graphs.clone();
        all.push(trials::case(
            format!("idx_flow_graph::{tag}::weights"),
            move || graphs::weights_case(&file, &tag, ni, no, k),
        ));
    }
    let sht_file = Arc::new(sht::file());
    for case in sht::cases(&sht_file) {
        for &iter in &case.iters {
            let (file, case) = (sht_file.clone(), case.clone());
            all.push(trials::case(
                format!("healpy_sht::{}::map2alm_iter{iter}", case.name),
                move || sht::map2alm_case(&file, &case, iter),
            ));
        }
        let (file, c) = (sht_file.clone(), case.clone());
        all.push(trials::case(
            format!("healpy_sht::{}::alm2map", case.name),
            move || sht::alm2map_case(&file, &c),
        ));
        for &spin in &case.spins {
            let (file, c) = (sht_file.clone(), case.clone());
            all.push(trials::case(
                format!("healpy_sht::{}::map2alm_spin{spin}", case.name),
                move || sht::map2alm_spin_case(&file, &c, spin),
            ));
            let (file, c) = (sht_file.clone(), case.clone());
            all.push(trials::case(
                format!("healpy_sht::{}::alm2map_spin{spin}", case.name),
                move || sht::alm2map_spin_case(&file, &c, spin),
            ));
        }
        if sht::has_pol(&sht_file, &case) {
            for &iter in &case.iters {
                let (file, c) = (sht_file.clone(), case.clone());
                all.push(trials::case(
                    format!("healpy_sht::{}::map2alm_pol_iter{iter}", case.name),
                    move || sht::map2alm_pol_case(&file, &c, iter),
                ));
            }
            let (file, c) = (sht_file.clone(), case.clone());
            all.push(trials::case(
                format!("healpy_sht::{}::alm2map_pol", case.name),
                move || sht::alm2map_pol_case(&file, &c),
            ));
        }
    }
    trials::run(all)
}
