//! Training: the loss falls, an interrupted run writes a checkpoint, and the
//! resumed run ends exactly where the uninterrupted one does.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use idx_flow_core::StateDict;
use idx_flow_healpix::geometry::{HealpixGrid, Ordering as PixOrdering};
use idx_flow_train::data::{HealpixMaps, SphereDataset, SphereSource};
use idx_flow_train::models::AutoencoderConfig;
use idx_flow_train::train::{
    BaselineMethod, Metrics, TrainConfig, TrainOptions, TrainOutcome, train,
};

/// A small run on nside 8 (shared with the distributed tests).
pub(crate) fn config() -> TrainConfig {
    TrainConfig::new()
        .with_model(
            AutoencoderConfig::new()
                .with_channels(2)
                .with_nside(8)
                .with_widths(vec![4, 8])
                .with_latent_channels(2),
        )
        .with_data("synthetic".into())
        .with_steps(8)
        .with_batch(4)
        .with_seed(11)
        .with_learning_rate(1e-2)
        .with_checkpoint_every(3)
        .with_eval_samples(3)
}

/// Two smooth channels on nside 8 (a dipole and a quadrupole of the direction).
fn dataset() -> SphereDataset {
    let grid = HealpixGrid::ring(8).unwrap();
    let c = grid.centers();
    let mut v: Vec<f32> = c.iter().map(|p| (p[0] + 0.5 * p[2]) as f32).collect();
    v.extend(c.iter().map(|p| (p[2] * p[2] - p[1] * p[0]) as f32));
    let maps = HealpixMaps::new(PixOrdering::Ring, 8, 2, v).unwrap();
    SphereDataset::new(SphereSource::maps(maps), 8).unwrap()
}

fn run(out: &Path, resume: bool, stop: Option<&AtomicBool>, stop_after: usize) -> TrainOutcome {
    let options = TrainOptions {
        resume,
        stop,
        ..TrainOptions::new(out)
    };
    train(&config(), &dataset(), &options, &mut |p| {
        if p.step == stop_after
            && let Some(s) = stop
        {
            s.store(true, Ordering::SeqCst);
        }
    })
    .unwrap()
}

fn finished(o: TrainOutcome) -> Metrics {
    match o {
        TrainOutcome::Finished(m) => *m,
        other => panic!("expected a finished run, got {other:?}"),
    }
}

#[test]
fn interrupted_and_resumed_run_equals_the_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let a = finished(run(&straight, false, None, 0));
    assert!(a.last_loss < a.first_loss, "{a:?}");
    assert!(a.heldout_psnr_db.is_finite() && a.heldout_mse > 0.0);
    for f in [
        "metrics.json",
        "config.json",
        "input.png",
        "reconstruction.png",
        "error.png",
        "loss.png",
        "rate_distortion.png",
        "model.safetensors",
    ] {
        assert!(straight.join(f).is_file(), "{f}");
    }
    // The baselines at the latent's size (2 channels × 48 pixels × 2 = 192
    // values of 1536): the truncation keeps at most as many values, the
    // pooled grid is the nearest in size (nside 2: 96 values). The data are
    // a dipole and a quadrupole, resampled nearest-pixel under the held-out
    // rotations: the truncation keeps the smooth field, pooling loses more
    // (measured 37.7 and 29.5 dB).
    assert_eq!(a.baselines.len(), 2, "{:?}", a.baselines);
    let (sh, pooled) = (&a.baselines[0], &a.baselines[1]);
    assert_eq!(sh.method, BaselineMethod::ShTruncation);
    assert_eq!((sh.size, sh.values), (5, 2 * 36));
    assert_eq!(sh.compression_ratio, 1536.0 / 72.0);
    assert_eq!(pooled.method, BaselineMethod::PooledInterpolated);
    assert_eq!((pooled.size, pooled.values), (2, 2 * 48));
    assert!(sh.heldout_psnr_db > 35.0, "{sh:?}");
    assert!(
        pooled.heldout_psnr_db < sh.heldout_psnr_db - 5.0,
        "{pooled:?}"
    );
    assert!(a.baseline_curves.len() > 2 && a.baseline_curves.contains(sh));

    // Stopped after step 5 (between checkpoints): a checkpoint of step 5 is written.
    let split = dir.path().join("split");
    let stop = AtomicBool::new(false);
    match run(&split, false, Some(&stop), 5) {
        TrainOutcome::Interrupted { step, checkpoint } => {
            assert_eq!(step, 5);
            assert!(checkpoint.ends_with("step-00000005"));
            assert!(checkpoint.join("model.safetensors").is_file());
            assert!(checkpoint.join("optimizer.bpk").is_file());
        }
        other => panic!("expected an interruption, got {other:?}"),
    }
    assert!(!split.join("metrics.json").exists());
    let latest = std::fs::read_to_string(split.join("checkpoints/latest")).unwrap();
    assert_eq!(latest, "step-00000005");

    let b = finished(run(&split, true, None, 0));
    assert_eq!(a.train_mse, b.train_mse);
    assert_eq!(a.heldout_mse, b.heldout_mse);
    assert_eq!((a.first_loss, a.last_loss), (b.first_loss, b.last_loss));
    let (wa, wb) = (
        StateDict::load(straight.join("model.safetensors")).unwrap(),
        StateDict::load(split.join("model.safetensors")).unwrap(),
    );
    assert_eq!(wa.keys(), wb.keys());
    for k in wa.keys() {
        let (x, y) = (wa.get(k).unwrap(), wb.get(k).unwrap());
        if let (Ok(x), Ok(y)) = (x.f32(k), y.f32(k)) {
            assert_eq!(x, y, "{k}");
        }
    }
}

#[test]
fn resume_refuses_a_missing_or_foreign_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let options = |resume| TrainOptions {
        resume,
        ..TrainOptions::new(dir.path())
    };
    let e = train(&config(), &dataset(), &options(true), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("run without --resume first"), "{e}");
    train(&config(), &dataset(), &options(false), &mut |_| {}).unwrap();
    let other = config().with_seed(12);
    let e = train(&other, &dataset(), &options(true), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("another config"), "{e}");
    let wrong = config().with_model(config().model.with_channels(3));
    let e = train(&wrong, &dataset(), &options(false), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("the data have 2 channels"), "{e}");
}
