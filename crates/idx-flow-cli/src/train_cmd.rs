//! `idx-flow train`: the main job.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use idx_flow::data::{SphereDataset, SphereSource};
use idx_flow::distributed::Collective;
use idx_flow::models::GraphKind;
use idx_flow::train::{TrainConfig, TrainOptions, TrainOutcome, device, train};
use indicatif::{ProgressBar, ProgressStyle};

/// The error text of a run stopped by Ctrl-C (the message is printed before).
pub const INTERRUPTED: &str = "interrupted";

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training config as JSON (the fields of idx_flow::train::TrainConfig; missing ones take their defaults).
    /// Options given on the command line override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data: bluemarble (default), etopo1, a .png / .jpg equirectangular image, or HEALPix maps:
    /// a .npy ([N], [C, N] or [T, C, N]) or FITS file, a directory or quoted glob ('maps/*.npy') of them,
    /// or a zarr array [time, channel, pixel] (its directory).
    #[arg(long)]
    data: Option<String>,
    /// .npy and zarr maps are in NESTED order (RING otherwise; FITS files say their ordering).
    #[arg(long)]
    nested: bool,
    /// Read every map into memory before training (default: read from disk as training goes).
    #[arg(long)]
    in_memory: bool,
    /// Turn every training sample by a random rotation (the default for a single image or map).
    #[arg(long, conflicts_with = "no_rotate")]
    rotate: bool,
    /// Never rotate (the default for a dataset of several maps).
    #[arg(long)]
    no_rotate: bool,
    /// Hold out the last fraction F of the time indices for validation (default 0.1).
    #[arg(long)]
    val_fraction: Option<f64>,
    /// NaN marks a masked pixel, as healpy's UNSEEN does (otherwise NaN is an error).
    #[arg(long)]
    mask_nan: bool,
    /// nside of the training grid (a power of two; default 64).
    #[arg(long)]
    nside: Option<u32>,
    /// Optimiser steps (default 3600).
    #[arg(long)]
    steps: Option<usize>,
    /// Samples (random rotations) per step (default 2).
    #[arg(long)]
    batch: Option<usize>,
    /// Seed of the initialisation and the rotations (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Write a checkpoint every N steps (default 300; 0: only at the end).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Output directory (default runs/<data>-n<nside>-<graph>-s<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
    /// Backend: cpu (burn's flex, default), wgpu or cuda (need the features of the same names).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Encoder graphs: stencil (default), children or knn.
    #[arg(long)]
    graph: Option<String>,
    /// Channels after each downsampling, comma-separated; the count is the depth (default 16,32).
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<usize>>,
    /// Latent channels on the coarsest grid (default 2).
    #[arg(long)]
    latent: Option<usize>,
    /// Threads per step (data-parallel shards of the batch; default 2 for a batch of 4 or more, use 1 on a GPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Peak learning rate (default 3e-3).
    #[arg(long)]
    lr: Option<f64>,
    /// Under mpirun (the `mpi` feature): seconds a rank waits for the others at
    /// an exchange before the run fails naming the rank that did not arrive.
    #[arg(long, default_value_t = 300.0)]
    peer_timeout: f64,
}

fn e(err: idx_flow::Error) -> String {
    err.to_string()
}

/// Prints on the process that reports: the only one, or rank 0 of a
/// data-parallel run.
macro_rules! say {
    ($lead:expr, $($arg:tt)*) => {
        if $lead {
            println!($($arg)*);
        }
    };
}

pub fn run(args: TrainArgs) -> Result<(), String> {
    if !(args.peer_timeout > 0.0 && args.peer_timeout.is_finite()) {
        return Err(format!(
            "--peer-timeout: expected a positive number of seconds, got {}",
            args.peer_timeout
        ));
    }
    #[cfg(feature = "mpi")]
    if idx_flow::distributed::mpi::MpiWorld::launched() {
        let world = idx_flow::distributed::mpi::MpiWorld::init(std::time::Duration::from_secs_f64(
            args.peer_timeout,
        ))
        .map_err(e)?;
        return match run_rank(args, Some(&world)) {
            Ok(()) => Ok(()),
            Err(message) if world.ranks() > 1 => {
                // A rank that failed must not finalise MPI (an exchange may
                // still hold its buffers, and the other ranks would wait for
                // it): report, then end every rank.
                eprintln!(
                    "error: rank {} of {}: {message}",
                    world.rank_index(),
                    world.ranks()
                );
                world.abort(if message == INTERRUPTED { 130 } else { 1 });
            }
            Err(message) => Err(message),
        };
    }
    if let Some(ranks) = idx_flow::distributed::launched_ranks().filter(|&n| n > 1) {
        // Without the feature every rank would train alone into the same
        // output directory.
        return Err(format!(
            "started as one of {ranks} MPI ranks, but this idx-flow was built without MPI; \
             rebuild with `cargo build --release -p idx-flow-cli --features mpi` \
             (scripts/install-mpi.sh installs OpenMPI), or run it without mpirun"
        ));
    }
    run_rank(args, None)
}

fn run_rank(args: TrainArgs, collective: Option<&dyn Collective>) -> Result<(), String> {
    let lead = collective.is_none_or(|c| c.rank() == 0);
    let ranks = collective.map_or(1, |c| c.size());
    let started = Instant::now();
    let from_file = args.config.is_some();
    let mut config = match &args.config {
        Some(path) => TrainConfig::from_json_file(path).map_err(e)?,
        None => TrainConfig::new(),
    };
    if let Some(d) = args.data {
        config.data = d;
    }
    if args.nested {
        config.nested = true;
    }
    if args.rotate {
        config.rotate = Some(true);
    }
    if args.no_rotate {
        config.rotate = Some(false);
    }
    if let Some(v) = args.val_fraction {
        config.val_fraction = v;
    }
    if args.mask_nan {
        config.mask_nan = true;
    }
    if let Some(v) = args.nside {
        config.model.nside = v;
    }
    if let Some(v) = args.steps {
        config.steps = v;
    }
    if let Some(v) = args.batch {
        config.batch = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if let Some(v) = args.checkpoint_every {
        config.checkpoint_every = v;
    }
    if let Some(g) = &args.graph {
        config.model.graph = g
            .parse::<GraphKind>()
            .map_err(|err| format!("--graph: {err}"))?;
    }
    if let Some(w) = args.widths {
        config.model.widths = w;
    }
    if let Some(v) = args.latent {
        config.model.latent_channels = v;
    }
    if let Some(v) = args.workers {
        config.workers = Some(v);
    }
    if let Some(v) = args.lr {
        config.learning_rate = v;
        config.min_learning_rate = config.min_learning_rate.min(v);
    }
    let (device, backend) = device::by_name(&args.device).map_err(e)?;

    let mut source = SphereSource::open(&config.data, config.nested).map_err(e)?;
    if !from_file {
        // Without a config file the model takes the data's channels.
        config.model.channels = source.channels();
    }
    config.validate().map_err(e)?;
    if args.in_memory {
        source = source.in_memory().map_err(e)?;
    }
    let describe = source.describe();
    let maps = source.samples() as u64;
    let scan = ProgressBar::new(maps);
    scan.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} maps read for statistics ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if maps < 100 {
        scan.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let data = SphereDataset::with_options(
        source,
        config.model.nside,
        &config.data_options(),
        &|done, _| scan.set_position(done as u64),
    )
    .map_err(e)?;
    scan.finish_and_clear();

    let out = args.out.unwrap_or_else(|| {
        let stem = std::path::Path::new(&config.data)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        PathBuf::from("runs").join(format!(
            "{stem}-n{}-{}-s{}",
            config.model.nside,
            config.model.graph.as_str(),
            config.seed
        ))
    });
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second Ctrl-C while the checkpoint is written exits at once.
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .map_err(|err| format!("cannot install the Ctrl-C handler: {err}"))?;
    }

    let m = &config.model;
    say!(
        lead,
        "data     {} ({describe}) on {}",
        config.data,
        data.grid()
    );
    say!(
        lead,
        "split    {} training map(s), {} validation map(s), {}",
        data.train_indices().len(),
        data.val_indices().len(),
        if config.rotates(data.source().samples()) {
            "random rotations"
        } else {
            "no rotations"
        }
    );
    say!(
        lead,
        "model    autoencoder, {} graphs, widths {:?}, latent {:?} per sample, compression {:.1}x",
        m.graph.as_str(),
        m.widths,
        m.latent_shape(),
        m.compression_ratio()
    );
    let parallel = if ranks > 1 {
        format!("{ranks} ranks x {} workers", config.workers.unwrap_or(1))
    } else {
        format!("{} workers", config.workers())
    };
    say!(
        lead,
        "training {} steps x {} samples ({parallel}), AdamW lr {:.0e} cosine to {:.0e}, seed {}, {backend}{}",
        config.steps,
        config.batch,
        config.learning_rate,
        config.min_learning_rate,
        config.seed,
        if args.resume { ", resuming" } else { "" }
    );
    say!(lead, "output   {}", out.display());

    let bar = ProgressBar::new(config.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps | {msg} | {elapsed_precise} eta {eta_precise}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !lead {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let options = TrainOptions {
        resume: args.resume,
        device,
        backend,
        stop: Some(&stop),
        collective,
        ..TrainOptions::new(out.clone())
    };
    let outcome = train(&config, &data, &options, &mut |p| {
        bar.set_position(p.step as u64);
        bar.set_message(format!(
            "loss {:.5} | lr {:.1e} | {:.1} samples/s",
            p.loss, p.lr, p.samples_per_s
        ));
    });
    bar.finish_and_clear();
    match outcome.map_err(e)? {
        TrainOutcome::Replica { interrupted, .. } => {
            if interrupted {
                Err(INTERRUPTED.into())
            } else {
                Ok(())
            }
        }
        TrainOutcome::Interrupted { step, checkpoint } => {
            eprintln!(
                "interrupted at step {step}/{}: checkpoint {}; continue with the same options and --resume",
                config.steps,
                checkpoint.display()
            );
            Err(INTERRUPTED.into())
        }
        TrainOutcome::Finished(m) => {
            println!(
                "loss     {:.5} at step 1 -> {:.5} at step {}",
                m.first_loss, m.last_loss, m.steps
            );
            println!(
                "result   held-out PSNR {:.2} dB (MSE {:.3e}, {}), train PSNR {:.2} dB, compression {:.1}x",
                m.heldout_psnr_db, m.heldout_mse, m.heldout, m.train_psnr_db, m.compression_ratio
            );
            for b in &m.baselines {
                println!(
                    "baseline {}: held-out PSNR {:.2} dB at compression {:.1}x ({:+.2} dB for the model)",
                    b.describe(),
                    b.heldout_psnr_db,
                    b.compression_ratio,
                    m.heldout_psnr_db - b.heldout_psnr_db
                );
            }
            println!(
                "time     {:.1} s training ({:.1} samples/s), {:.1} s in all, peak memory {}",
                m.train_seconds,
                m.samples_per_s,
                started.elapsed().as_secs_f64(),
                crate::alloc_stats::peak_rss_text()
            );
            println!(
                "wrote    {0}/metrics.json, {0}/normalisation.json, {0}/input.png, {0}/reconstruction.png, {0}/error.png, {0}/loss.png, {0}/rate_distortion.png, {0}/model.safetensors, {0}/checkpoints/",
                out.display()
            );
            Ok(())
        }
    }
}
