//! `idx-flow bench conv`: the SpatialConv forward and training step on the
//! fused kernels and on the plain tensor-op reference, side by side, and
//! idx_flow's (PyTorch) figures beside them when a Python with it is given.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use burn::backend::Dispatch;
use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{DType, Device, Distribution, FloatDType, Tensor};
use clap::{Args, Subcommand, ValueEnum};
use idx_flow::geometry::HealpixGrid;
use idx_flow::graphs::ConnectionGraph;
use idx_flow::io::write_bytes_atomically;
use idx_flow::kernels::{DeviceGraph, GraphKernels, KernelPath, gather_contract};
use idx_flow::layers::{SpatialConv, SpatialConvConfig};
use idx_flow::train::device::by_name;

use crate::alloc_stats;

/// idx_flow's side of the comparison (bench/idx_flow_conv.py), built in.
const PYTHON_SCRIPT: &str = include_str!("../../../bench/idx_flow_conv.py");

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchKind,
}

#[derive(Subcommand)]
enum BenchKind {
    /// SpatialConv on a k-nearest graph between two RING grids: forward and training step.
    Conv(ConvArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PathChoice {
    Fused,
    Reference,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeChoice {
    F32,
    Bf16,
    F16,
}

#[derive(Args)]
pub struct ConvArgs {
    /// Nside of the input grid.
    #[arg(long, default_value_t = 64)]
    nside_in: u32,
    /// Nside of the output grid.
    #[arg(long, default_value_t = 32)]
    nside_out: u32,
    /// Neighbours per output pixel.
    #[arg(short = 'k', long, default_value_t = 4)]
    k: usize,
    /// Batch size B.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Input channels C.
    #[arg(long, default_value_t = 32)]
    channels: usize,
    /// Output channels F.
    #[arg(long, default_value_t = 64)]
    filters: usize,
    /// cpu (flex), wgpu or cuda (the last two need the crate features).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Float type of the input and the parameters (bf16 and f16 on a GPU).
    #[arg(long, value_enum, default_value_t = DtypeChoice::F32)]
    dtype: DtypeChoice,
    /// Which implementation(s) to time.
    #[arg(long, value_enum, default_value_t = PathChoice::Both)]
    path: PathChoice,
    /// Timed runs (the median is printed).
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Also differentiate with respect to the input (a layer that is not the first).
    #[arg(long)]
    input_grad: bool,
    /// Compare the fused and the reference paths on the case (same input,
    /// parameters and output cotangent): the largest difference of the
    /// output, the kernel gradient and, with --input-grad, the input gradient.
    #[arg(long)]
    check: bool,
    /// Let the GPU kernels run on tensor cores (cooperative matrices) where
    /// the device offers them (f32 split into two f16 halves per operand);
    /// a line then says how many launches did. Same as IDX_FLOW_TENSOR_CORES=1.
    #[arg(long)]
    tensor_cores: bool,
    /// Also time each fused operation alone (forward, kernel gradient, input
    /// gradient; no autodiff, no loss), each a median over --runs: an
    /// `ops` line, to compare with a plain matrix product of the same size
    /// (2·B·N_out·k·C·F flops each, printed with it).
    #[arg(long)]
    per_op: bool,
    /// A Python with idx-flow 0.2.1 and torch: its figures are printed on a third line.
    /// Default: the environment variable IDX_FLOW_PYTHON, if set.
    #[arg(long)]
    python: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    match args.what {
        BenchKind::Conv(a) => conv(a),
    }
}

fn median_ms(
    mut f: impl FnMut() -> Result<(), String>,
    runs: usize,
    warmup: usize,
) -> Result<f64, String> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn conv(a: ConvArgs) -> Result<(), String> {
    let (device, device_name) = by_name(&a.device).map_err(|e| e.to_string())?;
    let is_cpu = device_name.contains("CPU");
    let dtype = match a.dtype {
        DtypeChoice::F32 => FloatDType::F32,
        DtypeChoice::Bf16 => FloatDType::BF16,
        DtypeChoice::F16 => FloatDType::F16,
    };
    if dtype != FloatDType::F32 && (is_cpu || !device.supports_dtype(dtype)) {
        return Err(format!(
            "--dtype {:?} is not supported on {device_name}; expected f32 there (bf16/f16 need a GPU that computes in them)",
            DType::from(dtype)
        ));
    }
    if a.tensor_cores {
        idx_flow::kernels::set_options(idx_flow::kernels::KernelOptions {
            tensor_cores: true,
            ..idx_flow::kernels::options()
        });
    }
    let t = Instant::now();
    let grid = |n| HealpixGrid::ring(n).map_err(|e| e.to_string());
    let graph = ConnectionGraph::knn(grid(a.nside_in)?, grid(a.nside_out)?, a.k)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "case: nside {}→{} k={} B={} C={} F={} on {device_name}, {:?}; graph built in {:.2} s; {} runs after {} warm-up",
        a.nside_in,
        a.nside_out,
        a.k,
        a.batch,
        a.channels,
        a.filters,
        DType::from(dtype),
        t.elapsed().as_secs_f64(),
        a.runs,
        a.warmup
    );
    let paths: &[KernelPath] = match a.path {
        PathChoice::Fused => &[KernelPath::Fused],
        PathChoice::Reference => &[KernelPath::Reference],
        PathChoice::Both => &[KernelPath::Fused, KernelPath::Reference],
    };
    for &path in paths {
        let name = match path {
            KernelPath::Fused => "fused",
            KernelPath::Reference => "reference",
        };
        match time_path(&a, &graph, &device, is_cpu, dtype, path) {
            Ok((fwd, step, peak)) => {
                println!("path={name} fwd_ms={fwd:.2} step_ms={step:.2} peak_mib={peak:.0}")
            }
            // A GPU reports a failed allocation only when data is read back:
            // a path that could not run gets a line saying so, not timings.
            Err(e) => println!("path={name} failed: {}", brief(&e)),
        }
    }
    if idx_flow::kernels::options().tensor_cores {
        println!(
            "tensor cores: {} kernel launches ran on them",
            idx_flow::kernels::tensor_core_launches()
        );
    }
    if a.per_op {
        let [fwd, grad_kernel, grad_input] = time_ops(&a, &graph, &device, dtype)?;
        let gflop = 2.0 * (a.batch * graph.n_out() * a.k * a.channels * a.filters) as f64 / 1e9;
        println!(
            "ops fused: fwd_ms={fwd:.2} grad_kernel_ms={grad_kernel:.2} grad_input_ms={grad_input:.2} gflop_each={gflop:.2}"
        );
    }
    if a.check {
        check_paths(&a, &graph, &device, dtype)?;
    }
    let python = a
        .python
        .clone()
        .or_else(|| std::env::var_os("IDX_FLOW_PYTHON").map(PathBuf::from));
    if let Some(python) = python {
        python_side(&a, &graph, &python)?;
    }
    Ok(())
}

/// Forward and step medians (ms) and peak memory (MiB) of one path: on the
/// CPU the heap's high-water mark, on a GPU the most the memory pool held
/// reserved during the runs (at least their high-water mark).
fn time_path(
    a: &ConvArgs,
    graph: &ConnectionGraph,
    device: &Device,
    is_cpu: bool,
    dtype: FloatDType,
    path: KernelPath,
) -> Result<(f64, f64, f64), String> {
    let sync = |d: &Device| d.sync().map_err(|e| format!("device sync: {e:?}"));
    if !is_cpu {
        device.memory_cleanup();
    }
    alloc_stats::reset_peak();
    let ad = device.clone().autodiff();
    let mut conv: SpatialConv = SpatialConvConfig::new(a.channels, a.filters)
        .init(graph, &ad)
        .map_err(|e| e.to_string())?;
    conv.indices = conv.indices.with_path(path);
    // Cast, then make the cast tensors the leaves (a cast of the f32 leaf
    // would tie every step to the first step's graph).
    let leaf = move |t: Tensor<3>| t.cast(dtype).detach().require_grad();
    conv.kernel = conv.kernel.map(leaf);
    conv.bias_param = conv
        .bias_param
        .map(|b| b.map(move |t| t.cast(dtype).detach().require_grad()));
    let x = Tensor::<3>::random(
        [a.batch, graph.n_in(), a.channels],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &ad,
    )
    .cast(dtype);
    let x = if a.input_grad { x.require_grad() } else { x };

    let valid = conv.valid();
    let x_valid = x.clone().inner();
    let fwd = median_ms(
        || {
            let y = valid.forward(x_valid.clone());
            sync(&y.device())
        },
        a.runs,
        a.warmup,
    )?;
    // On a GPU, what the memory pool holds reserved bounds the high-water
    // mark of the runs since the clean-up above: pages are only reused until
    // data is read back, and a read releases the free ones. So it is read
    // now, and after the steps, before anything is read.
    let reserved = || {
        device
            .memory_pool_usage()
            .map_or(f64::NAN, |u| u.bytes_reserved as f64)
    };
    let reserved_forward = if is_cpu { 0.0 } else { reserved() };
    // A GPU reports failures (an allocation larger than the device allows)
    // only when data is read back: without this the timings would be empty.
    if let Err(e) = valid.forward(x_valid).sum().try_into_scalar::<f32>() {
        return Err(format!("the forward did not execute: {e:?}"));
    }
    drop(valid);

    let mut optim = SgdConfig::new().init();
    let mut model = Some(conv);
    let step = median_ms(
        || {
            let conv = model.take().expect("model");
            let y = conv.forward(x.clone()).cast(FloatDType::F32);
            let loss = (y.clone() * y).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &conv);
            let conv = optim.step(1e-3, conv, grads);
            let r = sync(&conv.kernel.val().device());
            model = Some(conv);
            r
        },
        a.runs,
        a.warmup,
    )?;
    let reserved_step = if is_cpu { 0.0 } else { reserved() };
    let check = model
        .as_ref()
        .map(|m| m.kernel.val().sum().inner().try_into_scalar::<f32>());
    if let Some(Err(e)) = check {
        return Err(format!("the runs did not execute: {e:?}"));
    }
    let peak = if is_cpu {
        alloc_stats::peak_bytes() as f64
    } else {
        reserved_forward.max(reserved_step)
    };
    drop(model);
    Ok((fwd, step, peak / (1024.0 * 1024.0)))
}

/// Medians (ms) of the three fused operations called alone through the
/// backend extension: the forward (with bias), the kernel gradient and the
/// input gradient, on random operands of the case's sizes.
fn time_ops(
    a: &ConvArgs,
    graph: &ConnectionGraph,
    device: &Device,
    dtype: FloatDType,
) -> Result<[f64; 3], String> {
    let sync = |d: &Device| d.sync().map_err(|e| format!("device sync: {e:?}"));
    let (n_in, n_out, k) = (graph.n_in(), graph.n_out(), a.k);
    let g = DeviceGraph::new(graph.indices(), n_in, n_out, k, device);
    let normal = Distribution::Normal(0.0, 1.0);
    let x = Tensor::<3>::random([a.batch, n_in, a.channels], normal, device).cast(dtype);
    let kernel = Tensor::<2>::random([k * a.channels, a.filters], normal, device).cast(dtype);
    let bias = Tensor::<1>::random([a.filters], normal, device).cast(dtype);
    let dy = Tensor::<3>::random([a.batch, n_out, a.filters], normal, device).cast(dtype);
    // Unweighted, as SpatialConv on a k-nearest graph: not read by the kernels.
    let w = Tensor::<2>::ones([n_out, k], device).cast(dtype);
    let fwd = median_ms(
        || {
            let y = gather_contract(x.clone(), &g, None, kernel.clone(), Some(bias.clone()));
            sync(&y.device())
        },
        a.runs,
        a.warmup,
    )?;
    let grad_kernel = median_ms(
        || {
            let dk: Tensor<2> = Tensor::from_dispatch(Dispatch::gather_contract_grad_kernel(
                x.clone().into_dispatch(),
                g.indices.clone().into_dispatch(),
                w.clone().into_dispatch(),
                dy.clone().into_dispatch(),
                false,
            ));
            sync(&dk.device())
        },
        a.runs,
        a.warmup,
    )?;
    let grad_input = median_ms(
        || {
            let dx: Tensor<3> = Tensor::from_dispatch(Dispatch::gather_contract_grad_input(
                dy.clone().into_dispatch(),
                g.rev_offsets.clone().into_dispatch(),
                g.rev_edges.clone().into_dispatch(),
                g.rev_slots.clone().into_dispatch(),
                w.clone().into_dispatch(),
                kernel.clone().into_dispatch(),
                false,
            ));
            sync(&dx.device())
        },
        a.runs,
        a.warmup,
    )?;
    Ok([fwd, grad_kernel, grad_input])
}

/// Prints the largest `|fused − reference|` of the forward, of the kernel
/// gradient and (with `--input-grad`) of the input gradient, each beside the
/// largest `|reference|`: both paths get the same input, parameters and
/// output cotangent.
fn check_paths(
    a: &ConvArgs,
    graph: &ConnectionGraph,
    device: &Device,
    dtype: FloatDType,
) -> Result<(), String> {
    let ad = device.clone().autodiff();
    let mut conv: SpatialConv = SpatialConvConfig::new(a.channels, a.filters)
        .init(graph, &ad)
        .map_err(|e| e.to_string())?;
    conv.kernel = conv.kernel.map(|t| t.cast(dtype).detach().require_grad());
    let normal = burn::tensor::Distribution::Normal(0.0, 1.0);
    let x = Tensor::<3>::random([a.batch, graph.n_in(), a.channels], normal, device).cast(dtype);
    let cotangent = Tensor::<3>::random([a.batch, graph.n_out(), a.filters], normal, device);
    let mut reference = conv.clone();
    reference.indices = reference.indices.with_path(KernelPath::Reference);

    // (output, kernel gradient, input gradient) of one path, in f32.
    let run = |conv: &SpatialConv| {
        let x = Tensor::<3>::from_inner(x.clone());
        let x = if a.input_grad { x.require_grad() } else { x };
        let y = conv.forward(x.clone()).cast(FloatDType::F32);
        let loss = (y.clone() * Tensor::from_inner(cotangent.clone())).sum();
        let grads = loss.backward();
        let dk = conv
            .kernel
            .val()
            .grad(&grads)
            .map(|g| g.cast(FloatDType::F32));
        let dx = x.grad(&grads).map(|g| g.cast(FloatDType::F32));
        (y.inner(), dk, dx)
    };
    let (y_f, dk_f, dx_f) = run(&conv);
    let (y_r, dk_r, dx_r) = run(&reference);

    // A GPU reports a failed path (an allocation over the device's limit)
    // only when the values are read: say so instead of panicking.
    let read = |t: Tensor<1>, what: &str| {
        t.try_into_scalar::<f32>()
            .map_err(|e| format!("check: the {what} path did not execute: {e:?}"))
    };
    let compare = |what: &str, fused: Tensor<3>, expected: Tensor<3>| {
        let diff = read(
            (fused.clone() - expected.clone()).abs().max(),
            "fused or reference",
        );
        let scale = read(expected.abs().max(), "reference");
        match (diff, scale) {
            (Ok(diff), Ok(scale)) => println!(
                "check {what}: max|fused - reference| = {diff:.3e} (max|reference| = {scale:.3e})"
            ),
            (Err(e), _) | (_, Err(e)) => {
                let fused_ok = read(fused.abs().max(), "fused").is_ok();
                println!(
                    "{what}: {} (the fused path {})",
                    brief(&e),
                    if fused_ok { "ran" } else { "failed too" }
                );
            }
        }
    };
    compare("output", y_f, y_r);
    match (dk_f, dk_r) {
        (Some(f), Some(r)) => compare("kernel gradient", f, r),
        _ => println!("check kernel gradient: missing on one path"),
    }
    if a.input_grad {
        match (dx_f, dx_r) {
            (Some(f), Some(r)) => compare("input gradient", f, r),
            _ => println!("check input gradient: missing on one path"),
        }
    }
    Ok(())
}

/// Writes the graph for bench/idx_flow_conv.py and runs it with `python`.
fn python_side(a: &ConvArgs, graph: &ConnectionGraph, python: &PathBuf) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("idx-flow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let script = dir.join("idx_flow_conv.py");
    write_bytes_atomically(&script, PYTHON_SCRIPT.as_bytes()).map_err(|e| e.to_string())?;
    let npz = dir.join("graph.npz");
    write_graph_npz(graph, &npz)?;
    let dtype = match a.dtype {
        DtypeChoice::F32 => "f32",
        DtypeChoice::Bf16 => "bf16",
        DtypeChoice::F16 => "f16",
    };
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(&npz)
        .args(["--batch", &a.batch.to_string()])
        .args(["--channels", &a.channels.to_string()])
        .args(["--filters", &a.filters.to_string()])
        .args(["--device", &a.device])
        .args(["--dtype", dtype])
        .args(["--runs", &a.runs.to_string()])
        .args(["--warmup", &a.warmup.to_string()]);
    if a.input_grad {
        cmd.arg("--input-grad");
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running {}: {e}", python.display()));
    let _ = std::fs::remove_dir_all(&dir);
    match status?.code() {
        Some(0) => Ok(()),
        Some(3) => {
            eprintln!(
                "idx_flow is not installed in {}: no third line",
                python.display()
            );
            Ok(())
        }
        other => Err(format!("{} exited with {other:?}", python.display())),
    }
}

/// A device error on one line: its text without the backtrace lines that
/// follow a `Debug` print of burn's errors.
fn brief(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().contains("backtrace"))
        .collect();
    if lines.is_empty() {
        error.trim().to_string()
    } else {
        lines.join(" ")
    }
}

/// `indices` (int64 `[N_out, k]`) and `n_in` in an .npz the script reads.
fn write_graph_npz(graph: &ConnectionGraph, path: &PathBuf) -> Result<(), String> {
    use ndarray::{Array0, Array2};
    use ndarray_npy::NpzWriter;
    let indices = Array2::from_shape_vec((graph.n_out(), graph.k()), graph.indices().to_vec())
        .map_err(|e| e.to_string())?;
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut npz = NpzWriter::new(file);
    npz.add_array("indices", &indices)
        .and_then(|_| npz.add_array("n_in", &Array0::from_elem((), graph.n_in() as i64)))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    npz.finish()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}
