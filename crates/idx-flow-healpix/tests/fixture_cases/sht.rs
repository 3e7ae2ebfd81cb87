//! Spherical-harmonic transforms against healpy, one case of
//! `sht_manifest.json` at a time: `map2alm` at every `iter` the manifest
//! lists and `alm2map`, in the case's nside, ordering, lmax and mmax.

use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_healpix::sht::{Alm, SphericalTransform};
use idx_flow_testing::fixtures;
use rustfft::num_complex::Complex64;

/// healpy and we sum in other orders; the issue asks for 1e-10 relative.
const RELATIVE_TOL: f64 = 1e-10;

/// One case: what the manifest says about it.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub nside: u32,
    pub ordering: Ordering,
    pub lmax: usize,
    pub mmax: usize,
    pub iters: Vec<usize>,
}

pub fn file() -> SafetensorsFile {
    SafetensorsFile::open(fixtures::find("sht.safetensors")).expect("sht.safetensors")
}

pub fn cases(file: &SafetensorsFile) -> Vec<Case> {
    let manifest = fixtures::manifest("sht_manifest.json");
    fixtures::manifest_cases(&manifest, file, "sht")
        .into_iter()
        .map(|(name, c)| {
            let int = |key: &str| {
                c[key]
                    .as_u64()
                    .unwrap_or_else(|| panic!("sht case {name}: no integer '{key}'"))
            };
            let ordering = match c["ordering"].as_str() {
                Some("ring") => Ordering::Ring,
                Some("nested") => Ordering::Nested,
                other => panic!("sht case {name}: ordering {other:?}"),
            };
            let iters = c["iters"]
                .as_array()
                .expect("iters")
                .iter()
                .map(|i| i.as_u64().expect("iter") as usize)
                .collect();
            Case {
                nside: int("nside") as u32,
                ordering,
                lmax: int("lmax") as usize,
                mmax: int("mmax") as usize,
                iters,
                name,
            }
        })
        .collect()
}

fn alm(f: &SafetensorsFile, key: &str, case: &Case) -> Alm {
    let (values, shape) = f.f64(key).unwrap();
    assert_eq!(shape, vec![Alm::size(case.lmax, case.mmax), 2], "{key}");
    let values = values
        .chunks_exact(2)
        .map(|p| Complex64::new(p[0], p[1]))
        .collect();
    Alm::from_values(case.lmax, case.mmax, values).unwrap()
}

/// Largest difference over the largest reference value.
fn relative_error(got: impl Iterator<Item = f64>, want: impl Iterator<Item = f64>) -> f64 {
    let (mut diff, mut scale) = (0.0f64, 0.0f64);
    for (g, w) in got.zip(want) {
        diff = diff.max((g - w).abs());
        scale = scale.max(w.abs());
    }
    diff / scale
}

pub fn map2alm_case(f: &SafetensorsFile, case: &Case, iter: usize) {
    let sht = SphericalTransform::new(case.nside, case.lmax, Some(case.mmax)).unwrap();
    let (map, _) = f.f64(&format!("{}.input.map", case.name)).unwrap();
    let got = sht.map2alm(&map, case.ordering, iter).unwrap();
    let want = alm(f, &format!("{}.output.alm_iter{iter}", case.name), case);
    let flat = |a: &Alm| {
        a.values()
            .iter()
            .flat_map(|c| [c.re, c.im])
            .collect::<Vec<_>>()
    };
    let err = relative_error(flat(&got).into_iter(), flat(&want).into_iter());
    assert!(
        err < RELATIVE_TOL,
        "{}: map2alm iter {iter} off by {err:e} relative",
        case.name
    );
}

pub fn alm2map_case(f: &SafetensorsFile, case: &Case) {
    let sht = SphericalTransform::new(case.nside, case.lmax, Some(case.mmax)).unwrap();
    let input = alm(f, &format!("{}.input.alm", case.name), case);
    let got = sht.alm2map(&input, case.ordering).unwrap();
    let (want, _) = f.f64(&format!("{}.output.map", case.name)).unwrap();
    assert_eq!(got.len(), want.len());
    let err = relative_error(got.into_iter(), want.into_iter());
    assert!(
        err < RELATIVE_TOL,
        "{}: alm2map off by {err:e} relative",
        case.name
    );
}
