//! The `idx-flow` command, run as a user runs it.

use std::process::Command;

use idx_flow::graphs::ConnectionGraph;

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
fn bench_conv_prints_each_path_each_operation_and_the_check() {
    let (ok, out, err) = idx_flow(&[
        "bench",
        "conv",
        "--nside-in",
        "16",
        "--nside-out",
        "8",
        "-k",
        "4",
        "--batch",
        "2",
        "--channels",
        "33",
        "--filters",
        "65",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--input-grad",
        "--per-op",
        "--check",
    ]);
    assert!(ok, "{err}");
    let number = |line: &str, key: &str| -> f64 {
        let field = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"));
        field
            .parse()
            .unwrap_or_else(|_| panic!("{key}={field} in {line:?}"))
    };
    for path in ["fused", "reference"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("path={path} ")))
            .unwrap_or_else(|| panic!("no {path} line in {out}"));
        for key in ["fwd_ms", "step_ms", "peak_mib"] {
            assert!(number(line, key) >= 0.0, "{line}");
        }
    }
    let ops = out
        .lines()
        .find(|l| l.starts_with("ops fused: "))
        .expect("an ops line");
    // Times of this small case may print as 0.00 ms.
    for key in ["fwd_ms", "grad_kernel_ms", "grad_input_ms"] {
        assert!(number(ops, key) >= 0.0, "{ops}");
    }
    // 2·B·N_out·k·C·F = 2·2·768·4·33·65 = 26.4 million flops, printed in
    // GFLOP to two places (a missing factor would print 0.01 or less).
    assert_eq!(number(ops, "gflop_each"), 0.03, "{ops}");
    // The fused and the reference paths agree on the output and both gradients.
    for what in ["output", "kernel gradient", "input gradient"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("check {what}:")))
            .unwrap_or_else(|| panic!("no check of the {what} in {out}"));
        // `check WHAT: max|fused - reference| = D (max|reference| = R)`: the
        // paths sum in different orders, so D is float32 rounding of values of
        // size R (the tests' usual 1e-5 of the largest value).
        let field = |n: usize| -> f64 {
            line.split("= ")
                .nth(n)
                .and_then(|r| r.split(|c: char| c.is_whitespace() || c == ')').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{line}"))
        };
        let (diff, largest) = (field(1), field(2));
        assert!(diff <= 1e-5 * largest.max(1.0), "{line}");
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

fn read_json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The tiny configuration of the end-to-end tests: nside 8, two levels,
/// `steps` steps of 4 samples, a checkpoint every `every` steps, into `out`.
fn tiny(steps: &str, every: &str, out: &std::path::Path) -> Vec<String> {
    [
        "train",
        "--nside",
        "8",
        "--widths",
        "8,16",
        "--latent",
        "4",
        "--steps",
        steps,
        "--batch",
        "4",
        "--checkpoint-every",
        every,
        "--seed",
        "5",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn run_owned(args: &[String]) -> (bool, String, String) {
    idx_flow(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn train_checkpoint_resume_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let (ok, stdout, stderr) = run_owned(&tiny("6", "3", &a));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("held-out PSNR"), "{stdout}");
    assert!(stdout.contains("baseline SH truncation lmax"), "{stdout}");
    assert!(stdout.contains("baseline pooled to nside"), "{stdout}");
    for f in [
        "metrics.json",
        "config.json",
        "input.png",
        "reconstruction.png",
        "error.png",
        "loss.png",
        "model.safetensors",
        "checkpoints/latest",
        "checkpoints/step-00000003/optimizer.bpk",
        "checkpoints/step-00000006/model.safetensors",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    for png in [
        "input.png",
        "reconstruction.png",
        "error.png",
        "loss.png",
        "rate_distortion.png",
    ] {
        let bytes = std::fs::read(a.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 2000, "{png}");
    }
    let m = read_json(&a.join("metrics.json"));
    assert!(
        m["last_loss"].as_f64().unwrap() < m["first_loss"].as_f64().unwrap(),
        "loss did not fall: {m}"
    );
    assert_eq!(m["steps"], 6);
    assert_eq!(m["compression_ratio"], 12.0);
    assert_eq!(m["backend"], "flex (CPU)");
    assert!(m["heldout_psnr_db"].as_f64().unwrap() > 5.0, "{m}");
    let methods: Vec<&str> = m["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["sh_truncation", "pooled_interpolated"], "{m}");

    // Resume from the checkpoint the straight run wrote at step 3.
    let b = dir.path().join("b");
    let ckpt = b.join("checkpoints/step-00000003");
    std::fs::create_dir_all(&ckpt).unwrap();
    for f in [
        "model.safetensors",
        "optimizer.bpk",
        "state.json",
        "checksums.json",
    ] {
        std::fs::copy(a.join("checkpoints/step-00000003").join(f), ckpt.join(f)).unwrap();
    }
    std::fs::write(b.join("checkpoints/latest"), "step-00000003").unwrap();
    let mut args = tiny("6", "3", &b);
    args.push("--resume".into());
    let (ok, stdout, stderr) = run_owned(&args);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("resuming"), "{stdout}");
    let mb = read_json(&b.join("metrics.json"));
    for key in [
        "first_loss",
        "last_loss",
        "train_mse",
        "heldout_mse",
        "heldout_psnr_db",
    ] {
        assert_eq!(m[key], mb[key], "{key}");
    }
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap(),
        "resumed weights differ"
    );

    // Resuming with other options is refused.
    let mut args = tiny("6", "3", &b);
    args.extend(["--resume", "--lr", "0.001"].map(String::from));
    let (ok, _, stderr) = run_owned(&args);
    assert!(!ok && stderr.contains("another config"), "{stderr}");

    // A damaged newest checkpoint is passed over with a warning: the run goes
    // back to step 3 and ends exactly as the straight run did.
    let c = dir.path().join("c");
    for step in ["step-00000003", "step-00000006"] {
        let (from, to) = (
            a.join("checkpoints").join(step),
            c.join("checkpoints").join(step),
        );
        std::fs::create_dir_all(&to).unwrap();
        for f in [
            "model.safetensors",
            "optimizer.bpk",
            "state.json",
            "checksums.json",
        ] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
    let damage = |file: &std::path::Path| {
        let mut bytes = std::fs::read(file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(file, bytes).unwrap();
    };
    damage(&c.join("checkpoints/step-00000006/optimizer.bpk"));
    let mut args = tiny("6", "3", &c);
    args.push("--resume".into());
    let (ok, _, stderr) = run_owned(&args);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("step-00000006")
            && stderr.contains("optimizer.bpk")
            && stderr.contains("resuming from step 3"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(c.join("model.safetensors")).unwrap(),
        "weights after resuming from the older checkpoint differ"
    );
    // With no intact checkpoint left, --resume stops rather than starting afresh.
    for step in ["step-00000003", "step-00000006"] {
        damage(&c.join("checkpoints").join(step).join("model.safetensors"));
    }
    let (ok, _, stderr) = run_owned(&args);
    assert!(!ok && stderr.contains("no intact checkpoint"), "{stderr}");

    // Plot a FITS map and an .npy map.
    let grid = idx_flow::geometry::HealpixGrid::ring(8).unwrap();
    let z: Vec<f32> = grid.centers().iter().map(|v| v[2] as f32).collect();
    let fits = dir.path().join("z.fits");
    idx_flow::data::fits::write_healpix_fits(
        &fits,
        idx_flow::geometry::Ordering::Ring,
        std::slice::from_ref(&z),
    )
    .unwrap();
    let png = dir.path().join("z.png");
    let (ok, stdout, stderr) =
        idx_flow(&["plot", fits.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nside 8 ring"), "{stdout}");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    let npy = dir.path().join("z.npy");
    ndarray_npy::write_npy(&npy, &ndarray::Array1::from(z)).unwrap();
    let (ok, _, stderr) = idx_flow(&[
        "plot",
        npy.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--min",
        "-1",
        "--max",
        "1",
    ]);
    assert!(ok, "{stderr}");
}

#[test]
fn train_and_plot_refuse_bad_data_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    ndarray_npy::write_npy(d("short.npy"), &ndarray::Array1::<f32>::zeros(50)).unwrap();
    let mut nan = ndarray::Array1::<f32>::zeros(768);
    nan[3] = f32::NAN;
    ndarray_npy::write_npy(d("nan.npy"), &nan).unwrap();
    ndarray_npy::write_npy(d("one.npy"), &ndarray::Array1::<f32>::ones(768)).unwrap();
    std::fs::write(
        d("three.json"),
        r#"{"model": {"channels": 3, "nside": 8, "widths": [4]}}"#,
    )
    .unwrap();
    let out = d("out");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["train".into(), "--data".into(), d("short.npy")],
            "12·nside²",
        ),
        (vec!["train".into(), "--data".into(), d("nan.npy")], "NaN"),
        (
            vec!["train".into(), "--data".into(), d("missing.png")],
            "no such file",
        ),
        (
            vec!["train".into(), "--nside".into(), "12".into()],
            "power of two",
        ),
        (
            vec!["train".into(), "--device".into(), "tpu".into()],
            "expected cpu, wgpu or cuda",
        ),
        (
            vec!["train".into(), "--graph".into(), "hex".into()],
            "children, knn or stencil",
        ),
        (
            vec![
                "train".into(),
                "--config".into(),
                d("three.json"),
                "--data".into(),
                d("one.npy"),
            ],
            "the data have 1 channels but the model config expects 3",
        ),
        (
            vec![
                "train".into(),
                "--resume".into(),
                "--out".into(),
                out.clone(),
            ],
            "run without --resume first",
        ),
        (
            vec!["plot".into(), d("short.npy"), "-o".into(), d("p.png")],
            "12·nside²",
        ),
        (
            vec![
                "plot".into(),
                d("one.npy"),
                "-o".into(),
                d("p.png"),
                "--channel".into(),
                "2".into(),
            ],
            "1 channel(s)",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, stderr) = idx_flow(&args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_exits() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_idx-flow"))
        .args(tiny("100000", "0", &out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before the `output` line is printed.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("output")));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted at step"), "{stderr}");
    let latest = std::fs::read_to_string(out.join("checkpoints/latest")).unwrap();
    assert!(
        out.join("checkpoints")
            .join(latest.trim())
            .join("model.safetensors")
            .is_file()
    );
}

#[test]
fn kernel_variables_are_read_by_the_command_and_bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.npz");
    let args = [
        "indices",
        "--nside-in",
        "4",
        "--nside-out",
        "2",
        "-k",
        "4",
        "-o",
        path.to_str().unwrap(),
    ];
    let run = |name: &str, value: &str| {
        Command::new(env!("CARGO_BIN_EXE_idx-flow"))
            .args(args)
            .env(name, value)
            .output()
            .expect("run idx-flow")
    };
    // Values the command accepts.
    for (name, value) in [
        ("IDX_FLOW_KERNELS", "reference"),
        ("IDX_FLOW_TENSOR_CORES", "1"),
        ("IDX_FLOW_CUBE_TILING", "64,64,16,4,4"),
    ] {
        let out = run(name, value);
        assert!(
            out.status.success(),
            "{name}={value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each bad value stops the command before any work, naming the variable and what it expects.
    for (name, value, expected) in [
        ("IDX_FLOW_KERNELS", "fast", "'fused' or 'reference'"),
        ("IDX_FLOW_TENSOR_CORES", "yes", "expected 1 or 0"),
        ("IDX_FLOW_CUBE_TILING", "64,64,16,4", "bm,bn,bk,tm,tn"),
        ("IDX_FLOW_CUBE_TILING", "64,64,16,3,4", "bm,bn,bk,tm,tn"),
    ] {
        let out = run(name, value);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(
            stderr.contains(name) && stderr.contains(expected),
            "{name}={value}: {stderr}"
        );
    }
}

/// A build without the `mpi` feature, started by mpirun as one of several
/// ranks, refuses to train alone into the shared output directory.
#[cfg(not(feature = "mpi"))]
#[test]
fn train_under_mpirun_without_the_mpi_feature_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_idx-flow"))
        .args(["train", "--nside", "8", "--steps", "2", "--out"])
        .arg(dir.path().join("run"))
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .output()
        .expect("run idx-flow");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("built without MPI") && stderr.contains("--features mpi"),
        "{stderr}"
    );
    assert!(!dir.path().join("run").exists());
}
