//! Training on datasets (a folder of `.npy` files, masked maps) and applying
//! the trained model: codes and reconstructions of the documented shapes,
//! `UNSEEN` kept, the library's maps API equal to the streamed one.

use std::path::Path;

use burn::tensor::Device;
use idx_flow_healpix::geometry::{HealpixGrid, Ordering};
use idx_flow_train::data::mask::{UNSEEN, is_unseen};
use idx_flow_train::data::npy::NpyWriter;
use idx_flow_train::data::{HealpixMaps, SphereDataset, SphereSource};
use idx_flow_train::models::AutoencoderConfig;
use idx_flow_train::train::apply::{ApplyOptions, apply};
use idx_flow_train::train::checkpoint::{
    CheckpointState, latest_intact_checkpoint, write_checkpoint,
};
use idx_flow_train::train::{TrainConfig, TrainOptions, TrainOutcome, TrainedModel, train};

/// `t` smooth 2-channel maps on nside 8 (RING) that change with the time index.
fn smooth_maps(t: usize) -> Vec<f32> {
    let grid = HealpixGrid::ring(8).unwrap();
    let c = grid.centers();
    (0..t)
        .flat_map(|s| {
            let a = s as f64 * 0.3;
            let ch0: Vec<f32> = c
                .iter()
                .map(|p| (p[0] * a.cos() + p[1] * a.sin() + 0.3 * p[2]) as f32)
                .collect();
            let ch1: Vec<f32> = c
                .iter()
                .map(|p| (p[2] * p[2] - 0.2 * a * p[0]) as f32)
                .collect();
            ch0.into_iter().chain(ch1)
        })
        .collect()
}

fn config(data: &str) -> TrainConfig {
    TrainConfig::new()
        .with_model(
            AutoencoderConfig::new()
                .with_channels(2)
                .with_nside(8)
                .with_widths(vec![4, 8])
                .with_latent_channels(2),
        )
        .with_data(data.into())
        .with_steps(6)
        .with_batch(4)
        .with_seed(3)
        .with_learning_rate(1e-2)
        .with_checkpoint_every(0)
        .with_eval_samples(0)
        .with_val_fraction(0.25)
}

fn train_on(config: &TrainConfig, out: &Path) -> idx_flow_train::train::Metrics {
    let source = SphereSource::open(&config.data, config.nested).unwrap();
    let data = SphereDataset::with_options(source, 8, &config.data_options(), &|_, _| {}).unwrap();
    match train(config, &data, &TrainOptions::new(out), &mut |_| {}).unwrap() {
        TrainOutcome::Finished(m) => *m,
        other => panic!("{other:?}"),
    }
}

fn write(path: &Path, shape: &[usize], v: &[f32]) {
    let mut w = NpyWriter::create(path, shape).unwrap();
    w.append(v).unwrap();
    w.finish().unwrap();
}

#[test]
fn a_folder_of_maps_trains_with_a_validation_split_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let maps_dir = dir.path().join("maps");
    std::fs::create_dir(&maps_dir).unwrap();
    let all = smooth_maps(8);
    let per = 2 * 768;
    for (i, part) in all.chunks(2 * per).enumerate() {
        write(&maps_dir.join(format!("part{i}.npy")), &[2, 2, 768], part);
    }
    let cfg = config(maps_dir.to_str().unwrap());
    let run = dir.path().join("run");
    let m = train_on(&cfg, &run);
    assert_eq!((m.train_maps, m.val_maps, m.rotated), (6, 2, false));
    assert_eq!(
        (m.heldout.as_str(), m.heldout_samples),
        ("2 of 2 validation maps", 2)
    );
    assert!(
        m.heldout_mse.is_finite() && m.last_loss < m.first_loss,
        "{m:?}"
    );
    for f in [
        "normalisation.json",
        "config.json",
        "model.safetensors",
        "input.png",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }

    // Apply to new maps in NESTED order, some pixels masked.
    let model = TrainedModel::load(&run, &Device::default()).unwrap();
    let ring = HealpixMaps::new(Ordering::Ring, 8, 2, smooth_maps(3)).unwrap();
    let nested_grid = HealpixGrid::nested(8).unwrap();
    let mut nested = vec![0f32; 3 * per];
    for s in 0..3 {
        for k in 0..2 {
            for p in 0..768 {
                let r = nested_grid.to_ring(p as u64).unwrap() as usize;
                nested[s * per + k * 768 + p] = ring.map(s, k)[r];
            }
        }
    }
    nested[per + 10] = UNSEEN as f32; // sample 1, channel 0, pixel 10
    let new = dir.path().join("new.npy");
    write(&new, &[3, 2, 768], &nested);
    let data = model
        .dataset(SphereSource::open(new.to_str().unwrap(), true).unwrap())
        .unwrap();
    let out = dir.path().join("recon.npy");
    let codes = dir.path().join("codes.npy");
    let options = ApplyOptions {
        batch: 2,
        ..ApplyOptions::new(&out).with_latent(&codes)
    };
    let mut seen = vec![];
    let report = apply(&model, &data, &options, &mut |done, s| {
        seen.push((done, s.len()))
    })
    .unwrap();
    assert_eq!(seen, [(2, 2), (3, 1)]);
    assert_eq!(report.maps.len(), 3);
    assert_eq!(report.maps[1].valid, per - 1);
    assert!(report.psnr_db.is_finite());
    let recon: ndarray::Array3<f32> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(recon.shape(), [3, 2, 768]);
    assert!(is_unseen(recon[[1, 0, 10]]));
    assert_eq!(recon.iter().filter(|v| is_unseen(**v)).count(), 1);
    let z: ndarray::Array3<f32> = ndarray_npy::read_npy(&codes).unwrap();
    // Latent: 2 channels on nside 2 (two halvings of nside 8).
    assert_eq!(z.shape(), [3, 2, 48]);

    // The library's maps API gives the same numbers as the streamed files.
    let maps = HealpixMaps::new(Ordering::Nested, 8, 2, nested).unwrap();
    let r = model.reconstruct_maps(&maps).unwrap();
    assert_eq!(r.data(), recon.as_slice().unwrap());
    let e = model.encode_maps(&maps).unwrap();
    assert_eq!(e.data(), z.as_slice().unwrap());
    assert_eq!(e.grid(), HealpixGrid::nested(2).unwrap());
    let d = model.decode_maps(&e).unwrap();
    // Decoded on the model grid (NESTED, like the input here): equal where valid.
    for (i, (a, b)) in d.data().iter().zip(r.data()).enumerate() {
        if !is_unseen(*b) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{i}: {a} vs {b}");
        }
    }
    // Mean squared error of the report: recomputed from the files.
    let (mut sq, mut n) = (0f64, 0usize);
    for (a, b) in recon.iter().zip(maps.data()) {
        if !is_unseen(*b) {
            sq += ((a - b) as f64).powi(2);
            n += 1;
        }
    }
    assert!((sq / n as f64 - report.mse).abs() <= 1e-9 * report.mse.max(1e-12));
}

#[test]
fn masked_maps_train_with_a_finite_loss_on_their_valid_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = smooth_maps(1);
    // A masked band (|z| < 0.2, the galactic plane of a sky map) in channel 0.
    let grid = HealpixGrid::ring(8).unwrap();
    for (p, c) in grid.centers().iter().enumerate() {
        if c[2].abs() < 0.2 {
            v[p] = UNSEEN as f32;
        }
    }
    let maps = HealpixMaps::new(Ordering::Ring, 8, 2, v).unwrap();
    let path = dir.path().join("sky.fits");
    let channels: Vec<Vec<f32>> = (0..2).map(|k| maps.map(0, k).to_vec()).collect();
    idx_flow_train::data::fits::write_healpix_fits(&path, Ordering::Ring, &channels).unwrap();
    let cfg = config(path.to_str().unwrap()).with_eval_samples(3);
    let m = train_on(&cfg, &dir.path().join("run"));
    assert!(
        m.first_loss.is_finite() && m.last_loss.is_finite() && m.heldout_mse.is_finite(),
        "{m:?}"
    );
    assert!(m.rotated && m.heldout == "3 held-out rotations", "{m:?}");
    // The loss is on the data's scale over valid pixels: the masked value
    // (−1.6e30) would make it astronomically large.
    assert!(m.first_loss < 10.0, "{m:?}");
}

#[test]
fn apply_refuses_a_run_without_a_model_and_data_of_other_channels() {
    let dir = tempfile::tempdir().unwrap();
    let e = TrainedModel::load(dir.path(), &Device::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("without a model"), "{e}");
    let e = TrainedModel::load(&dir.path().join("nope"), &Device::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no such run directory"), "{e}");
    let cfg = config("x").with_val_fraction(0.0).with_steps(2);
    let maps = HealpixMaps::new(Ordering::Ring, 8, 2, smooth_maps(2)).unwrap();
    let data =
        SphereDataset::with_options(SphereSource::maps(maps), 8, &cfg.data_options(), &|_, _| {})
            .unwrap();
    let run = dir.path().join("run");
    train(&cfg, &data, &TrainOptions::new(&run), &mut |_| {}).unwrap();
    let model = TrainedModel::load(&run, &Device::default()).unwrap();
    let three = HealpixMaps::new(Ordering::Ring, 8, 3, vec![0.5; 3 * 768]).unwrap();
    let e = model
        .dataset(SphereSource::maps(three))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("trained on 2 channel(s) but the data have 3"),
        "{e}"
    );
    let two = HealpixMaps::new(Ordering::Ring, 8, 2, smooth_maps(2)).unwrap();
    let data = model.dataset(SphereSource::maps(two)).unwrap();
    let e = apply(
        &model,
        &data,
        &ApplyOptions::new(dir.path().join("r.fits")),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("one sample") && e.contains("write .npy"), "{e}");
    let e = apply(
        &model,
        &data,
        &ApplyOptions::new(dir.path().join("r.txt")),
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("expected a .npy or .fits"), "{e}");
    // A flipped bit in the weights still parses: the checksum catches it.
    let weights = run.join("model.safetensors");
    let genuine = std::fs::read(&weights).unwrap();
    let mut flipped = genuine.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x04;
    std::fs::write(&weights, &flipped).unwrap();
    let e = TrainedModel::load(&run, &Device::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("damaged"),
        "{e}"
    );
    std::fs::write(&weights, &genuine).unwrap();
    TrainedModel::load(&run, &Device::default()).unwrap();
    std::fs::remove_file(run.join("normalisation.json")).unwrap();
    let e = TrainedModel::load(&run, &Device::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("normalisation.json"), "{e}");
}

#[test]
fn checkpoint_losses_read_back_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    // Values whose shortest decimal form serde_json's default parser rounds wrongly.
    let mut x = 0.1f64;
    let losses: Vec<f64> = (0..2000)
        .map(|i| {
            x = (x * 3.7 + 0.123_456_789) % 1.0;
            x * 10f64.powi(i % 7 - 3)
        })
        .collect();
    let state = CheckpointState {
        step: losses.len(),
        losses: losses.clone(),
        train_seconds: 1.0 / 3.0,
        config: serde_json::json!({}),
    };
    write_checkpoint(dir.path(), &state, |f| {
        std::fs::write(f.model(), b"weights").unwrap();
        std::fs::write(f.optimizer(), b"moments").unwrap();
        Ok(())
    })
    .unwrap();
    let back = latest_intact_checkpoint(dir.path()).unwrap().state;
    for (a, b) in losses.iter().zip(&back.losses) {
        assert_eq!(a.to_bits(), b.to_bits(), "{a} read back as {b}");
    }
}

#[test]
fn a_batch_of_two_needs_no_workers_option() {
    let cfg = TrainConfig::new().with_batch(2);
    cfg.validate().unwrap();
    assert_eq!(cfg.workers(), 1);
    assert_eq!(TrainConfig::new().with_batch(4).workers(), 2);
    // The default batch, 2, trains on one worker.
    assert_eq!(TrainConfig::new().workers(), 1);
    let e = cfg
        .with_workers(Some(2))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 samples per worker"), "{e}");
}

#[test]
fn a_dataset_run_resumed_across_epochs_equals_the_uninterrupted_one() {
    use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.npy");
    write(&path, &[5, 2, 768], &smooth_maps(5));
    // 4 training maps, 4 samples a step: every step is an epoch; stop after 3.
    let cfg = config(path.to_str().unwrap())
        .with_val_fraction(0.2)
        .with_steps(5);
    let source = || SphereSource::open(path.to_str().unwrap(), false).unwrap();
    let data = SphereDataset::with_options(source(), 8, &cfg.data_options(), &|_, _| {}).unwrap();
    let finish = |o: TrainOutcome| match o {
        TrainOutcome::Finished(m) => *m,
        other => panic!("{other:?}"),
    };
    let a = finish(
        train(
            &cfg,
            &data,
            &TrainOptions::new(dir.path().join("a")),
            &mut |_| {},
        )
        .unwrap(),
    );
    let stop = AtomicBool::new(false);
    let b_dir = dir.path().join("b");
    let options = TrainOptions {
        stop: Some(&stop),
        ..TrainOptions::new(&b_dir)
    };
    let o = train(&cfg, &data, &options, &mut |p| {
        if p.step == 3 {
            stop.store(true, AtomicOrdering::SeqCst);
        }
    })
    .unwrap();
    assert!(
        matches!(o, TrainOutcome::Interrupted { step: 3, .. }),
        "{o:?}"
    );
    let options = TrainOptions {
        resume: true,
        ..TrainOptions::new(&b_dir)
    };
    let b = finish(train(&cfg, &data, &options, &mut |_| {}).unwrap());
    assert_eq!(a.first_loss.to_bits(), b.first_loss.to_bits());
    assert_eq!(a.last_loss.to_bits(), b.last_loss.to_bits());
    assert_eq!(a.train_mse.to_bits(), b.train_mse.to_bits());
    assert_eq!(a.heldout_mse.to_bits(), b.heldout_mse.to_bits());
    assert_eq!(
        std::fs::read(dir.path().join("a/model.safetensors")).unwrap(),
        std::fs::read(b_dir.join("model.safetensors")).unwrap()
    );
}
