//! The `idx-flow` command, run as a user runs it.

use std::process::Command;

use idx_flow::ConnectionGraph;

fn idx_flow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_idx-flow"))
        .args(args)
        .output()
        .expect("run idx-flow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn indices_writes_a_graph_and_one_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.npz");
    let p = path.to_str().unwrap();
    let (ok, stdout, stderr) = idx_flow(&[
        "indices",
        "--nside-in",
        "16",
        "--nside-out",
        "8",
        "-k",
        "4",
        "--weights",
        "gaussian",
        "-o",
        p,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("indices [768, 4]") && stdout.contains("km"),
        "{stdout}"
    );
    let g = ConnectionGraph::load(&path).unwrap();
    assert_eq!((g.n_out(), g.k()), (768, 4));
    assert!(g.weights().is_some());

    for (kind, extra, k) in [
        ("children", "8", 4usize),
        ("parent", "32", 1),
        ("stencil", "16", 9),
    ] {
        let path = dir.path().join(format!("{kind}.safetensors"));
        let (ok, stdout, stderr) = idx_flow(&[
            "indices",
            "--nside-in",
            "16",
            "--nside-out",
            extra,
            "--kind",
            kind,
            "--ordering",
            "nested",
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(ok, "{kind}: {stderr}");
        assert!(stdout.starts_with(kind), "{stdout}");
        assert_eq!(ConnectionGraph::load(&path).unwrap().k(), k);
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("g.npz");
    let o = o.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--nside-in", "0", "--nside-out", "8", "-k", "4"],
            "invalid nside 0",
        ),
        (
            &[
                "--nside-in",
                "6",
                "--nside-out",
                "3",
                "-k",
                "4",
                "--ordering",
                "nested",
            ],
            "power of two",
        ),
        (
            &["--nside-in", "16", "--nside-out", "8", "-k", "0"],
            "invalid k = 0",
        ),
        (
            &["--nside-in", "1", "--nside-out", "1", "-k", "13"],
            "invalid k = 13",
        ),
        (&["--nside-in", "16", "--nside-out", "8"], "-k is required"),
        (
            &[
                "--nside-in",
                "16",
                "--nside-out",
                "8",
                "--kind",
                "children",
                "-k",
                "9",
            ],
            "k = 4",
        ),
        (
            &["--nside-in", "16", "--nside-out", "8", "--kind", "stencil"],
            "must equal",
        ),
        (
            &[
                "--nside-in",
                "16",
                "--nside-out",
                "8",
                "-k",
                "4",
                "--weights",
                "cubic",
            ],
            "unknown method",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["indices"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["-o", o]);
        let (ok, _, stderr) = idx_flow(&full);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let (ok, _, stderr) = idx_flow(&[
        "indices",
        "--nside-in",
        "4",
        "--nside-out",
        "2",
        "-k",
        "4",
        "-o",
        "/nonexistent/dir/g.npz",
    ]);
    assert!(!ok && stderr.contains("/nonexistent/dir"), "{stderr}");
}
