//! Connection graphs against idx_flow (`connection_indices.safetensors`).

use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::ConnectionGraph;

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
