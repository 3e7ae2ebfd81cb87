//! Spherical-harmonic transforms beside healpy's, printed (not asserted).
//!
//! cargo bench -p idx-flow-healpix --bench sht [-- --python PYTHON] [-- --no-python]
//!     [-- --nsides 64,256,1024] [-- --threads 1,2] [-- --runs 5]
//!     [-- --ops map2alm0,map2alm3,alm2map,map2alm_spin,alm2map_spin]
//!
//! For each nside (lmax = 2·nside), operation (`map2alm` with iter 0 and 3,
//! `alm2map`, and the spin-2 pair's `map2alm_spin` / `alm2map_spin`) and thread count it runs our transform and healpy's in turn,
//! each in a fresh process, and prints a Markdown row: median wall times
//! (after a first call), their ratio, and how far each process's peak
//! resident memory rose above its inputs during the first call. Ours is timed
//! through the one-shot functions, which plan (rings, FFT plans) on every
//! call, as healpy does. healpy runs from `--python`, `IDX_FLOW_PYTHON` or
//! `python3` (it needs numpy and healpy), through `bench/healpy_sht.py`, with
//! `OMP_NUM_THREADS` set to the thread count.

use std::path::PathBuf;
use std::process::Command;

use idx_flow_healpix::geometry::Ordering;
use idx_flow_healpix::sht::{alm2map, alm2map_spin, map2alm, map2alm_spin};
use idx_flow_testing::bench::median_seconds;
use idx_flow_testing::rng::Rng;

fn status_kib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Child mode: one case in this process; prints `seconds=… extra_mib=…`.
fn run_case(nside: u32, lmax: usize, op: &str, threads: usize, runs: usize) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| {
        let npix = 12 * nside as usize * nside as usize;
        let mut rng = Rng::seeded(1);
        let map: Vec<f64> = rng.normal_vec(npix).into_iter().map(f64::from).collect();
        let alm = map2alm(&map, Ordering::Ring, lmax, 0).expect("map2alm");
        let u: Vec<f64> = rng.normal_vec(npix).into_iter().map(f64::from).collect();
        let run = || match op {
            "map2alm_spin" => {
                drop(map2alm_spin([&map, &u], 2, Ordering::Ring, lmax, 0).expect("map2alm_spin"))
            }
            "alm2map_spin" => {
                drop(alm2map_spin([&alm, &alm], nside, 2, Ordering::Ring).expect("alm2map_spin"))
            }
            "map2alm0" => drop(map2alm(&map, Ordering::Ring, lmax, 0).expect("map2alm")),
            "map2alm3" => drop(map2alm(&map, Ordering::Ring, lmax, 3).expect("map2alm")),
            "alm2map" => drop(alm2map(&alm, nside, Ordering::Ring).expect("alm2map")),
            other => panic!("unknown op {other}"),
        };
        // Memory: the first call, above what the inputs hold (VmHWM reset).
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = status_kib("VmRSS:");
        run();
        let extra_mib = (status_kib("VmHWM:") - before) / 1024.0;
        let seconds = median_seconds(run, runs, 0);
        println!("seconds={seconds} extra_mib={extra_mib:.1}");
    });
}

/// `(seconds, extra MiB, healpy version)` from a child's output line.
fn parse(out: &[u8]) -> Option<(f64, f64, Option<String>)> {
    let text = String::from_utf8_lossy(out);
    let field = |key: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key).map(str::to_string))
    };
    Some((
        field("seconds=")?.parse().ok()?,
        field("extra_mib=")?.parse().ok()?,
        field("healpy="),
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |f: &str| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let list = |f: &str, default: &str| -> Vec<usize> {
        value(f)
            .unwrap_or_else(|| default.into())
            .split(',')
            .map(|v| v.parse().expect("a number list"))
            .collect()
    };
    let runs = value("--runs").map_or(5, |r| r.parse().expect("--runs N"));
    if let Some(case) = value("--case") {
        let parts: Vec<&str> = case.split(':').collect();
        run_case(
            parts[0].parse().unwrap(),
            parts[1].parse().unwrap(),
            parts[2],
            parts[3].parse().unwrap(),
            runs,
        );
        return;
    }
    let python = value("--python")
        .or_else(|| std::env::var("IDX_FLOW_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/healpy_sht.py");
    let no_python = args.iter().any(|a| a == "--no-python");
    let exe = std::env::current_exe().expect("own path");
    println!(
        "| operation | nside | lmax | threads | ours ms | healpy ms | healpy / ours | ours MiB | healpy MiB |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut version = None;
    for nside in list("--nsides", "64,256,1024") {
        let lmax = 2 * nside;
        let runs = if nside >= 1024 { runs.min(3) } else { runs };
        let ops = value("--ops")
            .unwrap_or_else(|| "map2alm0,map2alm3,alm2map,map2alm_spin,alm2map_spin".into());
        for op in ops.split(',') {
            for threads in list("--threads", "1,2") {
                let ours = Command::new(&exe)
                    .args([
                        "--case",
                        &format!("{nside}:{lmax}:{op}:{threads}"),
                        "--runs",
                        &runs.to_string(),
                    ])
                    .output()
                    .ok()
                    .and_then(|o| parse(&o.stdout));
                let theirs = if no_python {
                    None
                } else {
                    Command::new(&python)
                        .arg(&script)
                        .args([&nside.to_string(), &lmax.to_string(), op, &runs.to_string()])
                        .env("OMP_NUM_THREADS", threads.to_string())
                        .output()
                        .ok()
                        .and_then(|o| parse(&o.stdout))
                };
                let ms = |r: &Option<(f64, f64, Option<String>)>| {
                    r.as_ref()
                        .map_or("-".into(), |r| format!("{:.1}", r.0 * 1e3))
                };
                let mib = |r: &Option<(f64, f64, Option<String>)>| {
                    r.as_ref().map_or("-".into(), |r| format!("{:.0}", r.1))
                };
                let ratio = match (&ours, &theirs) {
                    (Some(o), Some(t)) => format!("{:.2}", t.0 / o.0),
                    _ => "-".into(),
                };
                if let Some((_, _, Some(v))) = &theirs {
                    version = Some(v.clone());
                }
                let label = match op {
                    "map2alm0" => "map2alm, iter 0",
                    "map2alm3" => "map2alm, iter 3",
                    "map2alm_spin" => "map2alm_spin, spin 2",
                    "alm2map_spin" => "alm2map_spin, spin 2",
                    _ => "alm2map",
                };
                println!(
                    "| {label} | {nside} | {lmax} | {threads} | {} | {} | {ratio} | {} | {} |",
                    ms(&ours),
                    ms(&theirs),
                    mib(&ours),
                    mib(&theirs)
                );
            }
        }
    }
    match version {
        Some(v) => println!("\nhealpy {v} ({python})"),
        None => println!(
            "\nhealpy: not run (--no-python, or {python} lacks numpy/healpy; set IDX_FLOW_PYTHON)"
        ),
    }
}
