//! idx_flow's k-nearest graphs and weights, one tag of
//! `connection_indices.safetensors` at a time.

use idx_flow_healpix::geometry::{HealpixGrid, angular_distance};
use idx_flow_healpix::graphs::{ConnectionGraph, EARTH_RADIUS_KM, WeightMethod};
use idx_flow_healpix::io::SafetensorsFile;
use idx_flow_testing::fixtures;

const KM_TOL: f64 = 1e-6;

/// `(nside_in, nside_out, k)` of every `in{ni}.out{no}.k{k}` tag in the file.
pub fn tags(f: &idx_flow_healpix::io::SafetensorsFile) -> Vec<(String, u32, u32, usize)> {
    fixtures::prefixes(f, ".indices")
        .into_iter()
        .map(|tag| {
            let parts: Vec<&str> = tag.split('.').collect();
            let num = |p: &str, pre: &str| {
                p.strip_prefix(pre)
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("tag {tag}"))
            };
            let (ni, no, k) = (
                num(parts[0], "in"),
                num(parts[1], "out"),
                num(parts[2], "k"),
            );
            (tag, ni as u32, no as u32, k as usize)
        })
        .collect()
}

/// The k-nearest graph of one tag against idx_flow's (a test of its own in
/// `fixture_cases`): distances exactly, index sets up to ties.
pub fn knn_case(f: &SafetensorsFile, tag: &str, ni: u32, no: u32, k: usize) {
    let input = HealpixGrid::ring(ni).unwrap();
    let output = HealpixGrid::ring(no).unwrap();
    let graph = ConnectionGraph::knn(input, output, k).unwrap();
    let (ref_idx, shape) = f.i64(&format!("{tag}.indices")).unwrap();
    let (ref_km, _) = f.f64(&format!("{tag}.distances_km")).unwrap();
    assert_eq!(shape, vec![graph.n_out(), k], "{tag}");
    let ours_km = graph.distances_km();
    let cin = input.centers();
    let cout = output.centers();
    for (row, q) in cout.iter().enumerate() {
        let r = row * k..(row + 1) * k;
        let (ri, rd) = (&ref_idx[r.clone()], &ref_km[r.clone()]);
        let (oi, od) = (graph.row_indices(row), &ours_km[r]);
        for s in 0..k {
            assert!(
                (od[s] - rd[s]).abs() <= KM_TOL,
                "{tag} row {row} slot {s}: {} vs {} km",
                od[s],
                rd[s]
            );
            // Each index we report really lies at the reported distance.
            let d = angular_distance(*q, cin[oi[s] as usize]) * EARTH_RADIUS_KM;
            assert!((d - od[s]).abs() <= KM_TOL, "{tag} row {row} slot {s}");
            if s > 0 {
                // Ascending, up to the 1e-12 relative tolerance of ties.
                assert!(
                    od[s] >= od[s - 1] * (1.0 - 1e-11),
                    "{tag} row {row}: not ascending"
                );
            }
        }
        let mut distinct = oi.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), k, "{tag} row {row}: repeated index");
        // Index sets agree up to ties: every reference neighbour strictly
        // nearer than the k-th distance is one of ours.
        let kth = rd[k - 1];
        for s in 0..k {
            if rd[s] < kth - KM_TOL {
                assert!(oi.contains(&ri[s]), "{tag} row {row}: missing {}", ri[s]);
            }
        }
    }
}

/// The same graph chosen and ordered as idx_flow does
/// (`ConnectionGraph::knn_idx_flow`): every index equal to idx_flow's, ties
/// included, and the distances to 1e-9 km (two ulps apart at most: numpy's
/// arcsine and the C library's differ in the last bit of some values).
pub fn knn_idx_flow_case(f: &SafetensorsFile, tag: &str, ni: u32, no: u32, k: usize) {
    let graph = ConnectionGraph::knn_idx_flow(ni, no, k).unwrap();
    let (ref_idx, shape) = f.i64(&format!("{tag}.indices")).unwrap();
    let (ref_km, _) = f.f64(&format!("{tag}.distances_km")).unwrap();
    assert_eq!(shape, vec![graph.n_out(), k], "{tag}");
    for row in 0..graph.n_out() {
        let r = row * k..(row + 1) * k;
        assert_eq!(
            graph.row_indices(row),
            &ref_idx[r.clone()],
            "{tag} row {row}"
        );
    }
    for (i, (a, b)) in graph.distances_km().iter().zip(&ref_km).enumerate() {
        assert!((a - b).abs() <= 1e-9, "{tag}[{i}]: {a} vs {b} km");
    }
}

/// idx_flow's weights of one tag, every method the file holds, against ours
/// (a test of its own in `fixture_cases`); at least one method.
pub fn weights_case(f: &SafetensorsFile, tag: &str, ni: u32, no: u32, k: usize) {
    let graph = ConnectionGraph::knn(
        HealpixGrid::ring(ni).unwrap(),
        HealpixGrid::ring(no).unwrap(),
        k,
    )
    .unwrap();
    let mut checked = 0;
    for method in WeightMethod::ALL {
        let name = format!("{tag}.weights.{method}");
        if !f.contains(&name) {
            continue;
        }
        let (want, _) = f.f64(&name).unwrap();
        let got = graph.clone().with_weights(method).unwrap();
        for (i, (a, b)) in got.weights().unwrap().iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-9, "{name}[{i}]: {a} vs {b}");
        }
        checked += 1;
    }
    assert!(checked >= 1, "{tag}: no weights in the fixture");
}
