//! Connection graphs against idx_flow (`connection_indices.safetensors`).

use idx_flow_healpix::geometry::{HealpixGrid, angular_distance};
use idx_flow_healpix::graphs::{ConnectionGraph, EARTH_RADIUS_KM, WeightMethod};

use idx_flow_testing::fixtures;

const KM_TOL: f64 = 1e-6;

/// `(nside_in, nside_out, k)` of every `in{ni}.out{no}.k{k}` tag in the file.
fn tags(f: &idx_flow_healpix::io::SafetensorsFile) -> Vec<(String, u32, u32, usize)> {
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

#[test]
fn knn_reproduces_idx_flow() {
    let f = fixtures::open("connection_indices.safetensors");
    let cases = tags(&f);
    assert!(!cases.is_empty());
    for (tag, ni, no, k) in cases {
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
}

#[test]
fn knn_ties_are_ordered_by_index() {
    // The 4 nearest fine pixels of a coarse pixel are its children; where
    // their distances tie (relative 1e-12), they come by ascending index.
    let graph = ConnectionGraph::knn(
        HealpixGrid::nested(16).unwrap(),
        HealpixGrid::nested(8).unwrap(),
        4,
    )
    .unwrap();
    let mut tied_pairs = 0;
    for row in 0..graph.n_out() {
        let r = graph.row_indices(row);
        let mut sorted = r.to_vec();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..4).map(|c| 4 * row as i64 + c).collect::<Vec<_>>()
        );
        let d = &graph.distances_rad()[row * 4..row * 4 + 4];
        for s in 1..4 {
            if (d[s] - d[s - 1]).abs() <= 1e-12 * d[s] {
                assert!(
                    r[s] > r[s - 1],
                    "row {row}: tied slots out of index order: {r:?} {d:?}"
                );
                tied_pairs += 1;
            }
        }
    }
    assert!(
        tied_pairs > 100,
        "only {tied_pairs} tied pairs: the test would not see the rule"
    );
}

#[test]
fn weights_equal_idx_flow() {
    let f = fixtures::open("connection_indices.safetensors");
    for (tag, ni, no, k) in tags(&f) {
        let graph = ConnectionGraph::knn(
            HealpixGrid::ring(ni).unwrap(),
            HealpixGrid::ring(no).unwrap(),
            k,
        )
        .unwrap();
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
        }
    }
}

#[test]
fn same_grid_knn_starts_with_the_pixel_itself() {
    let g = HealpixGrid::ring(16).unwrap();
    let graph = ConnectionGraph::knn(g, g, 9).unwrap();
    for row in 0..graph.n_out() {
        assert_eq!(graph.row_indices(row)[0], row as i64);
        assert_eq!(graph.distances_rad()[row * 9], 0.0);
    }
}

#[test]
fn reverse_graph_lists_every_edge_once() {
    let graph = ConnectionGraph::knn(
        HealpixGrid::ring(8).unwrap(),
        HealpixGrid::ring(4).unwrap(),
        7,
    )
    .unwrap();
    let (offsets, edges) = graph.reverse();
    assert_eq!(offsets.len(), graph.n_in() + 1);
    assert_eq!(edges.len(), graph.indices().len());
    for i in 0..graph.n_in() {
        for &e in &edges[offsets[i]..offsets[i + 1]] {
            assert_eq!(graph.indices()[e], i as i64);
        }
    }
}
