//! `mpirun -n 2 idx-flow train`: the data-parallel run equals the
//! single-process run with two workers, and a rank that dies or hangs ends
//! the job with an error naming it. Needs OpenMPI (scripts/install-mpi.sh)
//! and the `mpi` feature: `cargo test -p idx-flow-cli --features mpi --test mpi`.
#![cfg(feature = "mpi")]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_idx-flow");

/// `mpirun` with the options a container's root user and a 2-core machine
/// need.
fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-n"])
        .arg(ranks.to_string())
        .arg(BIN);
    c
}

fn run(mut command: Command) -> Output {
    command.output().unwrap_or_else(|e| {
        panic!("cannot run {command:?} ({e}); install OpenMPI with scripts/install-mpi.sh")
    })
}

const TRAIN: [&str; 9] = [
    "train", "--nside", "8", "--steps", "20", "--batch", "4", "--seed", "3",
];

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn two_ranks_equal_one_process_with_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (two, one) = (dir.path().join("two"), dir.path().join("one"));
    let mut c = mpirun(2);
    c.args(TRAIN).arg("--out").arg(&two);
    let out = run(c);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Rank 0 reports, once.
    assert_eq!(
        stdout.matches("result   held-out PSNR").count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("2 ranks x 1 workers"), "{stdout}");

    let mut c = Command::new(BIN);
    c.args(TRAIN).args(["--workers", "2", "--out"]).arg(&one);
    let out = run(c);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (m2, m1) = (metrics(&two), metrics(&one));
    assert_eq!(m2["world_size"], 2);
    assert_eq!(m1["world_size"], 1);
    let psnr = |m: &serde_json::Value| m["heldout_psnr_db"].as_f64().unwrap();
    assert!(
        (psnr(&m2) - psnr(&m1)).abs() < 0.01,
        "{} dB against {} dB",
        psnr(&m2),
        psnr(&m1)
    );
    assert_eq!(m2["last_loss"], m1["last_loss"]);
    assert_eq!(
        std::fs::read(two.join("model.safetensors")).unwrap(),
        std::fs::read(one.join("model.safetensors")).unwrap(),
        "the weights differ"
    );
}

/// The PIDs of the processes that mpirun `parent` started, by their rank.
fn ranks_of(parent: &Child, ranks: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut found = vec![None; ranks];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Field 4 of /proc/PID/stat, after the parenthesised name.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid != Some(parent.id()) {
                continue;
            }
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            for var in env.split(|&b| b == 0) {
                if let Some(r) = var.strip_prefix(b"OMPI_COMM_WORLD_RANK=")
                    && let Ok(r) = String::from_utf8_lossy(r).parse::<usize>()
                    && r < ranks
                {
                    found[r] = Some(pid);
                }
            }
        }
        if found.iter().all(Option::is_some) {
            return found.into_iter().flatten().collect();
        }
        assert!(
            Instant::now() < deadline,
            "mpirun did not start {ranks} ranks"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts a long 2-rank run, does `harm` to rank 1 once training runs, and
/// returns mpirun's exit status, output and how long it took to end.
fn harm_rank_one(signal: &str) -> (bool, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = mpirun(2);
    c.args([
        "train",
        "--nside",
        "8",
        "--steps",
        "100000",
        "--batch",
        "4",
        "--peer-timeout",
        "5",
        "--out",
    ])
    .arg(dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = c.spawn().expect("run mpirun (scripts/install-mpi.sh)");
    let pids = ranks_of(&child, 2);
    // Let training start (rank 0 writes normalisation.json before step 1).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !dir.path().join("normalisation.json").exists() {
        assert!(Instant::now() < deadline, "training did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let harmed = Instant::now();
    let kill = Command::new("kill")
        .args([signal, &pids[1].to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let took = harmed.elapsed();
    if signal == "-STOP" {
        let _ = Command::new("kill")
            .args(["-KILL", &pids[1].to_string()])
            .status();
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, took)
}

#[test]
fn a_rank_that_dies_ends_the_job_naming_it() {
    let (ok, text, took) = harm_rank_one("-KILL");
    assert!(!ok, "{text}");
    assert!(text.contains("rank 1"), "{text}");
    // mpirun's report ("process rank 1 … exited on signal 9") or, where it
    // is slower, rank 0's own ("but rank 1 never arrived").
    assert!(
        text.contains("process rank 1") || text.contains("but rank 1"),
        "{text}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}\n{text}");
}

#[test]
fn a_rank_that_hangs_ends_the_job_within_the_timeout_naming_it() {
    let (ok, text, took) = harm_rank_one("-STOP");
    assert!(!ok, "{text}");
    // Rank 0 waited for rank 1's part ("never arrived") or for it to take
    // rank 0's result ("did not take it"), depending on where it stopped.
    assert!(text.contains("timed out after 5 s"), "{text}");
    assert!(
        text.contains("but rank 1 never arrived") || text.contains("but rank 1 did not take it"),
        "{text}"
    );
    assert!(took < Duration::from_secs(60), "{took:?}\n{text}");
}
