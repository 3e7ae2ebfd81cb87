//! The `idx-flow` command: `train` (the main job), `apply`, `plot`, `indices`, `bench`.

mod alloc_stats;
mod apply_cmd;
mod bench_cmd;
mod plot_cmd;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use idx_flow::geometry::{HealpixGrid, Ordering};
use idx_flow::graphs::{ConnectionGraph, WeightMethod};
use idx_flow::kernels::{KernelOptions, set_options};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "idx-flow",
    version,
    about = "Deep learning on the HEALPix sphere"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the HEALPix convolutional autoencoder (with no arguments: the default on the bundled Blue Marble).
    Train(train_cmd::TrainArgs),
    /// Apply a trained model to maps: reconstructions, latent codes and the error of each map.
    Apply(apply_cmd::ApplyArgs),
    /// Draw a HEALPix map (.npy or FITS) in the Mollweide projection as a PNG.
    Plot(plot_cmd::PlotArgs),
    /// Build a connection graph between two HEALPix grids and write it as .npz or .safetensors.
    Indices(IndicesArgs),
    /// Time the gather layers: fused kernels, the tensor-op reference and (optionally) idx_flow.
    Bench(bench_cmd::BenchArgs),
}

#[global_allocator]
static ALLOCATOR: alloc_stats::CountingAllocator = alloc_stats::CountingAllocator;

#[derive(Clone, Copy, ValueEnum)]
enum GraphKind {
    /// The k nearest input pixel centres of each output pixel centre (idx_flow's compute_connection_indices).
    Knn,
    /// The 4^m NESTED children of each output pixel (nside_in = nside_out·2^m).
    Children,
    /// The NESTED parent of each output pixel (nside_out = nside_in·2^m), k = 1.
    Parent,
    /// Each pixel and its 8 neighbours in compass order (one grid), k = 9.
    Stencil,
}

#[derive(Clone, Copy, ValueEnum)]
enum OrderingArg {
    Ring,
    Nested,
}

#[derive(clap::Args)]
struct IndicesArgs {
    /// nside of the input grid.
    #[arg(long)]
    nside_in: u32,
    /// nside of the output grid (defaults to nside_in; must equal it for --kind stencil).
    #[arg(long)]
    nside_out: Option<u32>,
    /// Connections per output pixel (required for knn; fixed by the hierarchy or the stencil otherwise).
    #[arg(short)]
    k: Option<usize>,
    /// Pixel ordering of both grids.
    #[arg(long, value_enum, default_value = "ring")]
    ordering: OrderingArg,
    /// Which graph to build.
    #[arg(long, value_enum, default_value = "knn")]
    kind: GraphKind,
    /// Add idx_flow's distance weights: inverse_square, gaussian, exponential or tricube.
    #[arg(long)]
    weights: Option<String>,
    /// Output file (.npz or .safetensors).
    #[arg(short, long)]
    output: PathBuf,
}

fn progress_bar(total: u64) -> ProgressBar {
    // Small grids finish before a bar would be seen.
    if total < 200_000 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} rows ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn indices(args: IndicesArgs) -> Result<(), String> {
    let ordering = match args.ordering {
        OrderingArg::Ring => Ordering::Ring,
        OrderingArg::Nested => Ordering::Nested,
    };
    let nside_out = args.nside_out.unwrap_or(args.nside_in);
    let input =
        HealpixGrid::new(args.nside_in, ordering).map_err(|e| format!("--nside-in: {e}"))?;
    let output = HealpixGrid::new(nside_out, ordering).map_err(|e| format!("--nside-out: {e}"))?;
    let weights = args
        .weights
        .as_deref()
        .map(|w| w.parse::<WeightMethod>())
        .transpose()
        .map_err(|e| format!("--weights: {e}"))?;
    let start = Instant::now();
    let (graph, name) = match args.kind {
        GraphKind::Knn => {
            let k = args
                .k
                .ok_or("-k is required for --kind knn (the number of nearest input pixels)")?;
            let bar = progress_bar(output.npix());
            let g = ConnectionGraph::knn_with_progress(input, output, k, &|done| {
                bar.set_position(done.max(bar.position()))
            });
            bar.finish_and_clear();
            (g, "knn")
        }
        GraphKind::Children => (ConnectionGraph::children(input, output), "children"),
        GraphKind::Parent => (ConnectionGraph::parent(input, output), "parent"),
        GraphKind::Stencil => {
            if nside_out != args.nside_in {
                return Err(format!(
                    "--kind stencil connects one grid to itself: --nside-out {nside_out} must equal --nside-in {}",
                    args.nside_in
                ));
            }
            if weights.is_some() {
                return Err(
                    "--weights replaces the stencil's mask (weight 0 on a missing neighbour); \
                     build the stencil without --weights"
                        .into(),
                );
            }
            (ConnectionGraph::stencil(input), "stencil")
        }
    };
    let mut graph = graph.map_err(|e| e.to_string())?;
    if let (Some(k), false) = (args.k, matches!(args.kind, GraphKind::Knn))
        && k != graph.k()
    {
        return Err(format!(
            "-k {k} does not fit a {name} graph {input} -> {output}, which has k = {}",
            graph.k()
        ));
    }
    if let Some(method) = weights {
        graph = graph.with_weights(method).map_err(|e| e.to_string())?;
    }
    let build_s = start.elapsed().as_secs_f64();
    graph.save(&args.output).map_err(|e| e.to_string())?;
    let (lo, hi) = graph.distance_range_km();
    println!(
        "{name} graph {input} -> {output}: indices [{}, {}], distances {lo:.3}..{hi:.3} km, weights {}, built in {build_s:.3} s -> {}",
        graph.n_out(),
        graph.k(),
        weights.map_or("none".to_string(), |w| w.to_string()),
        args.output.display()
    );
    Ok(())
}

/// The kernel options the environment asks for: `IDX_FLOW_KERNELS`
/// (`fused` or `reference`), `IDX_FLOW_TENSOR_CORES=1`, and
/// `IDX_FLOW_CUBE_TILING=bm,bn,bk,tm,tn`. The library reads no environment
/// variable; the command is where they are read, once, into the options.
fn kernel_options_from_env() -> Result<KernelOptions, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut options = KernelOptions::default();
    if let Some(path) = var("IDX_FLOW_KERNELS") {
        options.path = path.parse().map_err(|e| format!("IDX_FLOW_KERNELS: {e}"))?;
    }
    if let Some(on) = var("IDX_FLOW_TENSOR_CORES") {
        options.tensor_cores = match on.as_str() {
            "1" => true,
            "0" => false,
            _ => {
                return Err(format!(
                    "IDX_FLOW_TENSOR_CORES: got '{on}', expected 1 or 0"
                ));
            }
        };
    }
    if let Some(tiling) = var("IDX_FLOW_CUBE_TILING") {
        options.tiling = Some(
            tiling
                .parse()
                .map_err(|e| format!("IDX_FLOW_CUBE_TILING: {e}"))?,
        );
    }
    Ok(options)
}

fn main() -> ExitCode {
    alloc_stats::keep_freed_pages();
    let cli = Cli::parse();
    let result = kernel_options_from_env()
        .map(set_options)
        .and_then(|()| match cli.command {
            Command::Indices(args) => indices(args),
            Command::Train(args) => train_cmd::run(args),
            Command::Apply(args) => apply_cmd::run(args),
            Command::Plot(args) => plot_cmd::run(args),
            Command::Bench(args) => bench_cmd::run(args),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Ctrl-C during training: the checkpoint is written, the message printed.
        Err(message) if message == train_cmd::INTERRUPTED => ExitCode::from(130),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
