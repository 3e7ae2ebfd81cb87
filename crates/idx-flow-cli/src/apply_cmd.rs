//! `idx-flow apply --run runs/X --data NEW -o OUT.npy [--latent CODES.npy]`.

use std::path::PathBuf;

use idx_flow::data::SphereSource;
use idx_flow::train::apply::{ApplyOptions, apply};
use idx_flow::train::{TrainedModel, device};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The run directory of a finished `idx-flow train` (config.json, normalisation.json, model.safetensors).
    #[arg(long)]
    run: PathBuf,
    /// The maps: a .npy or FITS file, a directory or quoted glob of them, or a zarr array,
    /// with the model's channels (any nside; the model sees them on its own grid).
    #[arg(long)]
    data: String,
    /// .npy and zarr maps are in NESTED order (RING otherwise; FITS files say their ordering).
    #[arg(long)]
    nested: bool,
    /// Reconstructions [T, C, N] in the input's grid and ordering, UNSEEN where the input was masked
    /// (.npy, or .fits for one sample).
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the latent codes [T, C_latent, N_latent] (NESTED) here (.npy, or .fits for one sample).
    #[arg(long)]
    latent: Option<PathBuf>,
    /// Maps per forward pass.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Backend: cpu (default), wgpu or cuda (need the features of the same names).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print only the overall figures, not one line per map.
    #[arg(long)]
    quiet: bool,
}

fn e(err: idx_flow::Error) -> String {
    err.to_string()
}

pub fn run(args: ApplyArgs) -> Result<(), String> {
    let (device, backend) = device::by_name(&args.device).map_err(e)?;
    let model = TrainedModel::load(&args.run, &device).map_err(e)?;
    let source = SphereSource::open(&args.data, args.nested).map_err(e)?;
    let describe = source.describe();
    let data = model.dataset(source).map_err(e)?;
    let m = &model.config().model;
    println!(
        "model    {} (autoencoder, nside {}, {} channel(s), latent {:?}), {backend}",
        args.run.display(),
        m.nside,
        m.channels,
        m.latent_shape()
    );
    println!("data     {} ({describe})", args.data);
    let total = data.source().samples() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} maps ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut options = ApplyOptions::new(&args.output);
    options.batch = args.batch;
    options.latent = args.latent.clone();
    let report = apply(&model, &data, &options, &mut |done, scores| {
        bar.set_position(done as u64);
        if !args.quiet {
            // Above the bar on a terminal, plain lines into a pipe.
            bar.suspend(|| {
                for s in scores {
                    println!(
                        "map {:>6}  MSE {:.4e}  PSNR {:6.2} dB  ({} valid values)",
                        s.t, s.mse, s.psnr_db, s.valid
                    );
                }
            });
        }
    })
    .map_err(e)?;
    bar.finish_and_clear();
    println!(
        "result   {} maps, PSNR {:.2} dB (MSE {:.4e}, peak {:.4} of the training data)",
        report.maps.len(),
        report.psnr_db,
        report.mse,
        model.normalisation().peak
    );
    println!(
        "time     {:.1} s, {:.1} maps/s, peak memory {}",
        report.seconds,
        report.maps_per_s,
        crate::alloc_stats::peak_rss_text()
    );
    match &args.latent {
        Some(l) => println!("wrote    {}, {}", args.output.display(), l.display()),
        None => println!("wrote    {}", args.output.display()),
    }
    Ok(())
}
