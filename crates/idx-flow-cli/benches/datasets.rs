//! Training on a dataset larger than memory is wanted: read from disk, side
//! by side with the same training on the dataset held in memory, and
//! `idx-flow apply` over new maps.
//!
//! ```text
//! cargo bench -p idx-flow-cli --bench datasets
//! IDX_FLOW_BENCH_MAPS=20000 IDX_FLOW_BENCH_STEPS=100 IDX_FLOW_BENCH_DIR=/data/bench cargo bench -p idx-flow-cli --bench datasets
//! ```
//!
//! It writes (once; kept for later runs) `maps.npy` of `T` samples × 3
//! channels of nside-64 maps (`T = IDX_FLOW_BENCH_MAPS`, default 6 700:
//! 20 100 channel maps, 3.95 GB of float32) and a 1 000-sample `new.npy`,
//! then runs the `idx-flow` command, alternating streamed and in-memory
//! training twice (A B A B) for `IDX_FLOW_BENCH_STEPS` steps (default 100)
//! of the default model, and `apply` once. Each run is its own process, so
//! its peak resident memory is its own; the figures come from what the
//! command prints and from `metrics.json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use idx_flow::data::npy::NpyWriter;
use idx_flow::geometry::HealpixGrid;

const NSIDE: u32 = 64;
const CHANNELS: usize = 3;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `t` samples of smooth fields: each sample mixes two of 32 fixed base
/// fields (sums of a few plane waves on the sphere) with weights that drift
/// with the time index, so that samples differ and a model has structure to learn.
fn write_dataset(path: &Path, t: usize, seed: u64) {
    let grid = HealpixGrid::ring(NSIDE).unwrap();
    let centers = grid.centers();
    let n = centers.len();
    let mut rng = idx_flow::rng::SplitMix64::new(seed);
    let bases: Vec<Vec<f32>> = (0..32)
        .map(|_| {
            let waves: Vec<([f64; 3], f64)> = (0..6)
                .map(|_| {
                    let mut draw = || (rng.uniform() * 2.0 - 1.0) * 4.0;
                    let k = [draw(), draw(), draw()];
                    (k, rng.uniform() * std::f64::consts::TAU)
                })
                .collect();
            centers
                .iter()
                .map(|p| {
                    waves
                        .iter()
                        .map(|(k, ph)| (k[0] * p[0] + k[1] * p[1] + k[2] * p[2] + ph).sin())
                        .sum::<f64>() as f32
                })
                .collect()
        })
        .collect();
    let mut w = NpyWriter::create(path, &[t, CHANNELS, n]).unwrap();
    let started = Instant::now();
    let mut sample = vec![0f32; CHANNELS * n];
    for s in 0..t {
        for c in 0..CHANNELS {
            let (i, j) = ((s / 50 + 7 * c) % 32, (s / 50 + 7 * c + 1) % 32);
            let a = ((s % 50) as f32 / 50.0 * std::f32::consts::FRAC_PI_2).cos();
            let b = (1.0 - a * a).sqrt();
            for (o, (x, y)) in sample[c * n..(c + 1) * n]
                .iter_mut()
                .zip(bases[i].iter().zip(&bases[j]))
            {
                *o = a * x + b * y + 0.1 * c as f32;
            }
        }
        w.append(&sample).unwrap();
    }
    w.finish().unwrap();
    println!(
        "wrote {} ([{t}, {CHANNELS}, {n}] float32, {:.2} GB) in {:.1} s",
        path.display(),
        (t * CHANNELS * n * 4) as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_idx-flow"))
        .args(args)
        .output()
        .expect("run idx-flow");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "idx-flow {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The number before `unit` on the line starting with `prefix`.
fn figure(stdout: &str, prefix: &str, unit: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in\n{stdout}"));
    let at = line
        .find(unit)
        .unwrap_or_else(|| panic!("no {unit:?} in {line:?}"));
    line[..at]
        .split_whitespace()
        .last()
        .and_then(|v| v.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before {unit:?} in {line:?}"))
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let t = env_usize("IDX_FLOW_BENCH_MAPS", 6_700);
    let steps = env_usize("IDX_FLOW_BENCH_STEPS", 100).to_string();
    let dir = std::env::var_os("IDX_FLOW_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data")
        });
    std::fs::create_dir_all(&dir).unwrap();
    let maps = dir.join(format!("maps-{t}.npy"));
    if !maps.is_file() {
        write_dataset(&maps, t, 1);
    }
    let new = dir.join("new-1000.npy");
    if !new.is_file() {
        write_dataset(&new, 1000, 2);
    }
    let runs = dir.join("runs");
    let train = |name: &str, in_memory: bool| -> (f64, f64, f64) {
        let out = runs.join(name);
        let mut args = vec![
            "train",
            "--data",
            maps.to_str().unwrap(),
            "--steps",
            &steps,
            // The model and batch the figures in docs/performance.md were
            // measured with (the default until 2026-12-05), pinned so that
            // they stay comparable when the default changes.
            "--widths",
            "16,32,64",
            "--latent",
            "8",
            "--graph",
            "children",
            "--batch",
            "4",
            "--checkpoint-every",
            "0",
            "--out",
            out.to_str().unwrap(),
        ];
        if in_memory {
            args.push("--in-memory");
        }
        let started = Instant::now();
        let stdout = run(&args);
        let wall = started.elapsed().as_secs_f64();
        let per_s = figure(&stdout, "time", "samples/s");
        let rss = figure(&stdout, "time", "MB RSS");
        (per_s, rss, wall)
    };
    println!(
        "training {steps} steps of 4 samples on {} ({t} x {CHANNELS} nside-{NSIDE} maps), 2 rounds A B A B",
        maps.display()
    );
    println!(
        "{:<22} {:>12} {:>14} {:>10}",
        "run", "samples/s", "peak RSS MB", "wall s"
    );
    let mut rates = [vec![], vec![]];
    for round in 0..2 {
        for (k, (name, in_memory)) in [("streamed", false), ("in memory", true)]
            .into_iter()
            .enumerate()
        {
            let (per_s, rss, wall) = train(&format!("{k}-{round}"), in_memory);
            rates[k].push(per_s);
            println!(
                "{:<22} {per_s:>12.2} {rss:>14.0} {wall:>10.1}",
                format!("{name} ({})", round + 1)
            );
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "streamed / in memory: {:.3} of the in-memory training throughput",
        mean(&rates[0]) / mean(&rates[1])
    );

    let run_dir = runs.join("0-1");
    let recon = dir.join("recon.npy");
    let codes = dir.join("codes.npy");
    let stdout = run(&[
        "apply",
        "--run",
        run_dir.to_str().unwrap(),
        "--data",
        new.to_str().unwrap(),
        "-o",
        recon.to_str().unwrap(),
        "--latent",
        codes.to_str().unwrap(),
        "--quiet",
    ]);
    println!(
        "apply on 1000 maps: {:.1} maps/s, peak RSS {:.0} MB, PSNR {:.2} dB",
        figure(&stdout, "time", "maps/s"),
        figure(&stdout, "time", "MB RSS"),
        figure(&stdout, "result", "dB")
    );
    let _ = std::fs::remove_file(recon);
    let _ = std::fs::remove_file(codes);
}
