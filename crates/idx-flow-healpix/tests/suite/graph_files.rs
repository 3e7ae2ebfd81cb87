//! Graph files: round trips and clear errors for bad files.

use std::path::Path;

use idx_flow_healpix::Error;
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::{ConnectionGraph, WeightMethod};
use ndarray::{Array0, Array2};
use ndarray_npy::NpzWriter;

fn sample() -> ConnectionGraph {
    ConnectionGraph::knn(
        HealpixGrid::ring(8).unwrap(),
        HealpixGrid::nested(4).unwrap(),
        5,
    )
    .unwrap()
    .with_weights(WeightMethod::Gaussian)
    .unwrap()
}

fn assert_close(a: &ConnectionGraph, b: &ConnectionGraph) {
    assert_eq!(
        (a.input(), a.output(), a.k()),
        (b.input(), b.output(), b.k())
    );
    assert_eq!(a.indices(), b.indices());
    assert_eq!(a.weights(), b.weights());
    for (x, y) in a.distances_rad().iter().zip(b.distances_rad()) {
        assert!((x - y).abs() <= 1e-15, "{x} vs {y}");
    }
}

#[test]
fn npz_and_safetensors_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let g = sample();
    for name in ["g.npz", "g.safetensors"] {
        let path = dir.path().join(name);
        g.save(&path).unwrap();
        assert_close(&g, &ConnectionGraph::load(&path).unwrap());
        assert_close(
            &g,
            &ConnectionGraph::load_with_grids(&path, g.input(), g.output()).unwrap(),
        );
        let wrong = HealpixGrid::ring(4).unwrap();
        assert!(ConnectionGraph::load_with_grids(&path, g.input(), wrong).is_err());
    }
    // Nothing but the two files: the temporary names were renamed away.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let unweighted = g.without_weights();
    let path = dir.path().join("u.npz");
    unweighted.save(&path).unwrap();
    assert_eq!(ConnectionGraph::load(&path).unwrap().weights(), None);
}

fn write_npz(
    path: &Path,
    indices: Option<Array2<f64>>,
    int_indices: Option<Array2<i64>>,
    distances: Array2<f64>,
    with_grids: bool,
) {
    let mut npz = NpzWriter::new(std::fs::File::create(path).unwrap());
    if let Some(i) = indices {
        npz.add_array("indices", &i).unwrap();
    }
    if let Some(i) = int_indices {
        npz.add_array("indices", &i).unwrap();
    }
    npz.add_array("distances_km", &distances).unwrap();
    if with_grids {
        for (n, v) in [
            ("nside_in", 2i64),
            ("nside_out", 1),
            ("ordering_in", 0),
            ("ordering_out", 0),
        ] {
            npz.add_array(n, &Array0::from_elem((), v)).unwrap();
        }
    }
    npz.finish().unwrap();
}

fn format_message(r: idx_flow_healpix::Result<ConnectionGraph>) -> String {
    match r {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(other) => panic!("expected a format error, got {other}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = Array2::<f64>::zeros((12, 2));

    let p = dir.path().join("float_indices.npz");
    write_npz(&p, Some(Array2::zeros((12, 2))), None, d.clone(), true);
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(msg.contains("int64"), "{msg}");

    let p = dir.path().join("short.npz");
    write_npz(
        &p,
        None,
        Some(Array2::zeros((11, 2))),
        Array2::zeros((11, 2)),
        true,
    );
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(msg.contains("11 rows") && msg.contains("12"), "{msg}");

    let p = dir.path().join("mismatch.npz");
    write_npz(
        &p,
        None,
        Some(Array2::zeros((12, 2))),
        Array2::zeros((12, 3)),
        true,
    );
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(
        msg.contains("distances_km") && msg.contains("[12, 2]"),
        "{msg}"
    );

    let p = dir.path().join("out_of_range.npz");
    write_npz(
        &p,
        None,
        Some(Array2::from_elem((12, 2), 48)),
        d.clone(),
        true,
    );
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(msg.contains("48") && msg.contains("0..48"), "{msg}");

    let p = dir.path().join("no_grids.npz");
    write_npz(&p, None, Some(Array2::zeros((12, 2))), d.clone(), false);
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(msg.contains("load_with_grids"), "{msg}");
    let g = ConnectionGraph::load_with_grids(
        &p,
        HealpixGrid::ring(2).unwrap(),
        HealpixGrid::ring(1).unwrap(),
    )
    .unwrap();
    assert_eq!(g.k(), 2);

    // Truncated bodies, both formats.
    let good = sample();
    for name in ["t.npz", "t.safetensors"] {
        let p = dir.path().join(name);
        good.save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        format_message(ConnectionGraph::load(&p));
    }

    assert!(matches!(
        ConnectionGraph::load(dir.path().join("g.txt")),
        Err(Error::Format { .. })
    ));
    assert!(matches!(
        ConnectionGraph::load(dir.path().join("missing.npz")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn safetensors_with_wrong_dtype_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.safetensors");
    let mut w = idx_flow_healpix::io::SafetensorsWriter::new();
    w.add_f32("indices", &[12, 1], &[0.0; 12]).unwrap();
    w.add_f64("distances_km", &[12, 1], &[0.0; 12]).unwrap();
    w.write(&p).unwrap();
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(
        msg.contains("expected int64") && msg.contains("F32"),
        "{msg}"
    );
}

/// The fuzzer's finding: a 2 kB `.npz` whose `distances_km` member declares a
/// 662 MB `.npy` header, which ndarray-npy allocated before reading. A shape
/// larger than its member was the same allocation one step later. Both are
/// now refused from the header, naming the member and the sizes.
#[test]
fn an_npz_member_declaring_more_than_it_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.npz");
    std::fs::write(&p, include_bytes!("data/npz-shape-beyond-member.npz")).unwrap();
    let msg = format_message(ConnectionGraph::load(&p));
    assert!(msg.contains("'distances_km'"), "{msg}");
    assert!(msg.contains("declares 662372470 bytes"), "{msg}");
    assert!(msg.contains("holds only 512"), "{msg}");

    // The same shape in a well-formed archive written by ndarray-npy.
    let good = sample();
    let p = dir.path().join("big.npz");
    good.save(&p).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let shape = format!("({}, {})", good.indices().len() / good.k(), good.k());
    let at = bytes
        .windows(shape.len())
        .position(|w| w == shape.as_bytes())
        .expect("the saved graph's indices shape");
    // A one-dimensional tuple of the same number of characters, so the
    // header stays well formed.
    let huge = format!("({},)", "9".repeat(shape.len() - 3));
    bytes[at..at + shape.len()].copy_from_slice(huge.as_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let msg = format_message(ConnectionGraph::load(&p));
    let expected = format!(
        "'indices': the header says shape [{}]",
        &huge[1..huge.len() - 2]
    );
    assert!(msg.contains(&expected), "{msg}");
}
