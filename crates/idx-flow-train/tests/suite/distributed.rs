//! Data-parallel training with ranks as threads ([`LocalGroup`]): two ranks
//! train exactly as one process with two workers, bit for bit; runs repeat
//! bit for bit; resume works; a rank that stops or differs is named.

use std::path::Path;
use std::time::Duration;

use idx_flow_core::StateDict;
use idx_flow_healpix::geometry::{HealpixGrid, Ordering as PixOrdering};
use idx_flow_train::data::{HealpixMaps, SphereDataset, SphereSource};
use idx_flow_train::distributed::{Collective, LocalGroup};
use idx_flow_train::train::{Metrics, TrainConfig, TrainOptions, TrainOutcome, train};
use idx_flow_train::{Error, Result};

/// The training tests' small run, shorter and with another seed.
fn config() -> TrainConfig {
    crate::training::config()
        .with_steps(6)
        .with_seed(3)
        .with_eval_samples(2)
}

/// Six maps of two smooth channels on nside 8; with `masked`, a band of
/// pixels of each map is NaN (masked), a different band per map.
fn dataset(config: &TrainConfig, masked: bool) -> SphereDataset {
    let grid = HealpixGrid::ring(8).unwrap();
    let c = grid.centers();
    let mut v = Vec::new();
    for t in 0..6 {
        let phase = t as f64 * 0.4;
        for ch in 0..2 {
            v.extend(c.iter().enumerate().map(|(i, p)| {
                if masked && (i + 37 * t) % 97 < 12 {
                    f32::NAN
                } else if ch == 0 {
                    (p[0] * phase.cos() + p[1] * phase.sin() + 0.5 * p[2]) as f32
                } else {
                    (p[2] * p[2] - p[1] * p[0] + 0.1 * phase) as f32
                }
            }));
        }
    }
    let maps = HealpixMaps::new(PixOrdering::Ring, 8, 2, v).unwrap();
    SphereDataset::with_options(
        SphereSource::maps(maps),
        8,
        &config.data_options(),
        &|_, _| {},
    )
    .unwrap()
}

fn alone(config: &TrainConfig, masked: bool, out: &Path) -> Metrics {
    let config = config.clone().with_workers(Some(2));
    match train(
        &config,
        &dataset(&config, masked),
        &TrainOptions::new(out),
        &mut |_| {},
    )
    .unwrap()
    {
        TrainOutcome::Finished(m) => *m,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

/// Trains `configs[r]` on rank `r` of a group of threads, rank `r` writing
/// into `out/rank-r` (only rank 0 should).
fn in_group(
    configs: Vec<TrainConfig>,
    masked: bool,
    out: &Path,
    resume: bool,
    timeout: Duration,
    fail_rank_after: Option<(usize, usize)>,
) -> Vec<std::thread::Result<Result<TrainOutcome>>> {
    let ranks = LocalGroup::new(configs.len(), timeout);
    std::thread::scope(|s| {
        let handles: Vec<_> = ranks
            .into_iter()
            .zip(configs)
            .map(|(rank, config)| {
                let dir = out.join(format!("rank-{}", rank.rank()));
                s.spawn(move || {
                    let data = dataset(&config, masked);
                    let options = TrainOptions {
                        resume,
                        collective: Some(&rank),
                        ..TrainOptions::new(dir)
                    };
                    let me = rank.rank();
                    train(&config, &data, &options, &mut |p| {
                        if let Some((r, step)) = fail_rank_after
                            && r == me
                            && p.step == step
                        {
                            panic!("rank {me} stops after step {step}");
                        }
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    })
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let sd = StateDict::load(dir.join("model.safetensors")).unwrap();
    sd.keys()
        .into_iter()
        .filter_map(|k| {
            sd.get(k)
                .unwrap()
                .f32(k)
                .ok()
                .map(|v| (k.to_owned(), v.to_vec()))
        })
        .collect()
}

fn finished(result: std::thread::Result<Result<TrainOutcome>>) -> Metrics {
    match result
        .expect("the rank's thread ran")
        .expect("the rank trained")
    {
        TrainOutcome::Finished(m) => *m,
        other => panic!("expected rank 0's finished run, got {other:?}"),
    }
}

#[test]
fn two_ranks_train_bit_for_bit_as_one_process_with_two_workers() {
    for masked in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = config().with_mask_nan(masked);
        let single = alone(&config, masked, &dir.path().join("single"));
        let mut results = in_group(
            vec![config.clone(), config.clone()],
            masked,
            dir.path(),
            false,
            Duration::from_secs(60),
            None,
        );
        let replica = results.pop().unwrap().unwrap().unwrap();
        assert!(
            matches!(
                replica,
                TrainOutcome::Replica {
                    rank: 1,
                    step: 6,
                    interrupted: false
                }
            ),
            "{replica:?}"
        );
        let two = finished(results.pop().unwrap());
        assert_eq!(two.world_size, 2);
        assert_eq!(single.world_size, 1);
        assert_eq!(two.first_loss, single.first_loss, "masked {masked}");
        assert_eq!(two.last_loss, single.last_loss, "masked {masked}");
        assert_eq!(two.heldout_mse, single.heldout_mse, "masked {masked}");
        assert_eq!(
            weights(&dir.path().join("rank-0")),
            weights(&dir.path().join("single"))
        );
        // Only rank 0 writes.
        assert!(!dir.path().join("rank-1").exists());
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("rank-0/metrics.json")).unwrap())
                .unwrap();
        assert_eq!(json["world_size"], 2);
    }
}

#[test]
fn a_two_rank_run_repeats_bit_for_bit_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let both = || vec![config.clone(), config.clone()];
    let long = Duration::from_secs(60);
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    finished(in_group(both(), false, &first, false, long, None).remove(0));
    finished(in_group(both(), false, &second, false, long, None).remove(0));
    assert_eq!(
        weights(&first.join("rank-0")),
        weights(&second.join("rank-0"))
    );

    // Resume from the step-3 checkpoint of the second run.
    let ckpts = second.join("rank-0/checkpoints");
    std::fs::remove_dir_all(ckpts.join("step-00000006")).unwrap();
    std::fs::remove_file(ckpts.join("latest")).unwrap();
    let resumed = finished(in_group(both(), false, &second, true, long, None).remove(0));
    assert_eq!(resumed.world_size, 2);
    assert_eq!(
        weights(&first.join("rank-0")),
        weights(&second.join("rank-0"))
    );
}

#[test]
fn a_rank_that_stops_is_named_by_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let results = in_group(
        vec![config(), config()],
        false,
        dir.path(),
        false,
        Duration::from_secs(3),
        Some((1, 2)),
    );
    assert!(results[1].is_err(), "rank 1 panicked as planned");
    let err = results[0].as_ref().unwrap().as_ref().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Timeout { .. }), "{text}");
    assert!(text.contains("rank 1 never joined"), "{text}");
    assert!(text.contains("step 3"), "{text}");
}

/// Every rank of a group given `configs` fails, with `expected` in its error.
fn every_rank_refuses(configs: Vec<TrainConfig>, timeout: Duration, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    for r in in_group(configs, false, dir.path(), false, timeout, None) {
        let text = r.unwrap().unwrap_err().to_string();
        assert!(text.contains(expected), "{text}");
    }
}

#[test]
fn ranks_started_differently_fail_together() {
    every_rank_refuses(
        vec![config(), config().with_seed(4)],
        Duration::from_secs(60),
        "rank 1 started with another configuration",
    );
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_refused() {
    let odd = config().with_batch(3);
    every_rank_refuses(
        vec![odd.clone(), odd],
        Duration::from_secs(5),
        "cannot be split evenly over 2 ranks",
    );
    // Two ranks of a batch of 2: one sample each, too few for batch norm.
    let small = config().with_batch(2);
    every_rank_refuses(
        vec![small.clone(), small],
        Duration::from_secs(5),
        "gives each worker 1 sample(s)",
    );
}
