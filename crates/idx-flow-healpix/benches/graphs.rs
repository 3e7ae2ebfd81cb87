//! Connection-graph build times, printed (not asserted).
//!
//! cargo bench -p idx-flow-healpix --bench graphs [-- --python PYTHON] [-- --no-python] [-- --large] [-- --only KIND]
//!
//! For each case it prints our median time and the process's peak resident
//! memory, and, when a Python interpreter with idx_flow 0.2.1 is found
//! (`IDX_FLOW_PYTHON`, `--python`, or `python3`), idx_flow's time for the same
//! case beside it, measured in the same run by `bench/idx_flow_indices.py`.

use idx_flow_testing::bench::median_seconds;
use std::path::PathBuf;
use std::process::Command;

use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::ConnectionGraph;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn python_time(python: &str, ni: u32, no: u32, k: usize) -> Option<f64> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/idx_flow_indices.py");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("{ni}:{no}:{k}"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find_map(|w| w.strip_prefix("seconds=")?.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let python = args
        .iter()
        .position(|a| a == "--python")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("IDX_FLOW_PYTHON").ok())
        .unwrap_or_else(|| "python3".into());
    let python_ok = !flag("--no-python") && python_time(&python, 8, 4, 4).is_some();
    let threads = rayon::current_num_threads();
    println!(
        "connection graphs, {threads} threads; idx_flow reference: {}",
        if python_ok {
            python.as_str()
        } else {
            "not installed (set IDX_FLOW_PYTHON)"
        }
    );
    let mut cases: Vec<(&str, u32, u32, usize)> = vec![
        ("knn", 64, 32, 4),
        ("knn", 256, 128, 9),
        ("knn", 512, 256, 9),
        ("knn", 1024, 512, 9),
        ("knn", 256, 512, 4),
        // idx_flow's own order of tied neighbours (`knn_idx_flow`).
        ("exact", 64, 32, 4),
        ("exact", 256, 128, 9),
        ("exact", 512, 256, 9),
        ("children", 1024, 512, 4),
        ("stencil", 512, 512, 9),
    ];
    if flag("--large") {
        cases.push(("knn", 2048, 1024, 9));
    }
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    for (kind, ni, no, k) in cases {
        if only.as_deref().is_some_and(|o| o != kind) {
            continue;
        }
        let input = HealpixGrid::ring(ni).unwrap();
        let output = HealpixGrid::ring(no).unwrap();
        let runs = if ni >= 1024 { 3 } else { 5 };
        let build = || match kind {
            "knn" => ConnectionGraph::knn(input, output, k).unwrap(),
            "exact" => ConnectionGraph::knn_idx_flow(ni, no, k).unwrap(),
            "children" => ConnectionGraph::children(
                input
                    .with_ordering(idx_flow_healpix::geometry::Ordering::Nested)
                    .unwrap(),
                output
                    .with_ordering(idx_flow_healpix::geometry::Ordering::Nested)
                    .unwrap(),
            )
            .unwrap(),
            _ => ConnectionGraph::stencil(input).unwrap(),
        };
        let graph_mib = {
            let g = build();
            (g.indices().len() * 16) as f64 / (1024.0 * 1024.0)
        };
        let ours = median_seconds(|| drop(build()), runs, 0);
        let reference = if python_ok && matches!(kind, "knn" | "exact") && ni <= 512 && no <= 512 {
            python_time(&python, ni, no, k).map_or("failed".to_string(), |s| {
                format!("{s:.3} s ({:.0}x)", s / ours)
            })
        } else {
            "-".to_string()
        };
        println!(
            "{kind:8} nside {ni:4} -> {no:4} k={k}: ours {ours:.3} s (median of {runs}), graph {graph_mib:.0} MiB, peak RSS {:.0} MiB | idx_flow {reference}",
            peak_rss_mib()
        );
    }
}
