//! Our side of `bench/families`: one case of the pde, spectral or
//! equivariant family, timed on the default (flex CPU) device.
//!
//! cargo bench -p idx-flow --bench families -- --case NAME [--runs 15] [--warmup 3]
//! cargo bench -p idx-flow --bench families -- --list
//!
//! Prints one JSON line, `{"case", "fwd_ms": [...], "step_ms": [...],
//! "params"}`: the forward in inference, and the step (forward, mean-square
//! error against a random target, backward to every parameter, or to the
//! input for a layer without any) on an
//! autodiff device. The cases are the Python packages' (bench/families_*.py)
//! with the same architectures and parameter counts.
//!
//! It runs on mimalloc, as the `idx-flow` command does and as
//! docs/performance.md ("Allocator") advises for programs using the library:
//! with glibc's `malloc`, every buffer over 32 MB is mapped fresh and its
//! pages faulted in again on every call. bench/families also sets
//! `MIMALLOC_PURGE_DELAY=-1` (keep freed pages), as the command does.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use idx_flow::equivariant::{ConvContract, ConvContractConfig, MultiImage, TensorKey};
use idx_flow::kernels::loss::{mse_loss, squared_error};
use idx_flow::pde::{ClassicFnoConfig, ClassicUNetConfig, ModernUNetConfig};
use idx_flow::spectral::{FourierMixing, SpectransAfnoMixingConfig, TransformerBlockConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 8;
const CASES: [&str; 7] = [
    "fno",
    "classic_unet",
    "modern_unet",
    "fourier_mixing",
    "fnet_block",
    "afno",
    "conv_contract",
];

/// A model under test: its forward and its step on one device.
trait Case {
    fn params(&self) -> usize;
    fn forward(&self);
    fn step(&self);
}

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Waits for a result (flex is eager; reading one value is the barrier
/// other backends would need).
fn sync<const D: usize>(t: Tensor<D>) {
    let _ = t.sum().into_scalar::<f32>();
}

/// The library's mean squared error (one fused operation each way on the
/// CPU), as the PyTorch and JAX sides use their own.
fn mse<const D: usize>(y: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    mse_loss(y, target).expect("prediction and target of one shape")
}

/// A model mapping one tensor to one of the same shape.
struct Plain<M, const D: usize> {
    model: M,
    x: Tensor<D>,
    target: Tensor<D>,
    run: fn(&M, Tensor<D>) -> Tensor<D>,
}

impl<M: Module, const D: usize> Case for Plain<M, D> {
    fn params(&self) -> usize {
        self.model.num_params()
    }
    fn forward(&self) {
        sync((self.run)(&self.model, self.x.clone()));
    }
    fn step(&self) {
        let y = (self.run)(&self.model, self.x.clone());
        let _ = mse(y, self.target.clone()).backward();
    }
}

fn plain<M: Module + 'static, const D: usize>(
    model: M,
    shape: [usize; D],
    run: fn(&M, Tensor<D>) -> Tensor<D>,
    device: &Device,
) -> Box<dyn Case> {
    let mut x = random(shape, device);
    // A layer without parameters is stepped to its input instead.
    if device.is_autodiff() && model.num_params() == 0 {
        x = x.require_grad();
    }
    Box::new(Plain {
        model,
        x,
        target: random(shape, device),
        run,
    })
}

/// ginjax's ConvContract: 8 scalar and 8 vector channels in and out.
struct Equivariant {
    conv: ConvContract,
    x: MultiImage<4>,
    target: MultiImage<4>,
}

impl Equivariant {
    fn image(device: &Device) -> MultiImage<4> {
        MultiImage::<4>::new(vec![true, true])
            .and_then(|m| m.with(TensorKey::SCALAR, random([BATCH, 8, 64, 64], device)))
            .and_then(|m| m.with(TensorKey::VECTOR, random([BATCH, 16, 64, 64], device)))
            .expect("a valid image")
    }
}

impl Case for Equivariant {
    fn params(&self) -> usize {
        self.conv.num_params()
    }
    fn forward(&self) {
        let y = self.conv.forward(self.x.clone());
        for (_, block) in y.iter() {
            sync(block.clone());
        }
    }
    fn step(&self) {
        let y = self.conv.forward(self.x.clone());
        // The mean over every value of every block, as the JAX side.
        let total: usize = y
            .iter()
            .map(|(_, b)| b.dims().iter().product::<usize>())
            .sum();
        let loss = y
            .iter()
            .map(|(key, b)| {
                let t = self.target.get(key).expect("the same keys");
                squared_error(b.clone(), t.clone(), None, 1.0 / total as f64)
                    .expect("blocks and targets of one shape")
            })
            .reduce(|a, b| a + b)
            .expect("blocks");
        let _ = loss.backward();
    }
}

fn build(case: &str, device: &Device) -> Result<Box<dyn Case>, idx_flow::Error> {
    let grid = [BATCH, 1, 128, 128];
    let tokens = [BATCH, 1024, 256];
    Ok(match case {
        "fno" => plain(
            ClassicFnoConfig::new(2, 1, 1).init(device)?,
            grid,
            |m, x| m.forward(x),
            device,
        ),
        "classic_unet" => plain(
            ClassicUNetConfig::new(2, 1, 1).init(device)?,
            grid,
            |m, x| m.forward(x),
            device,
        ),
        "modern_unet" => plain(
            ModernUNetConfig::new(2, 1, 1).init(device)?,
            grid,
            |m, x| m.forward(x),
            device,
        ),
        "fourier_mixing" => plain(FourierMixing::new(), tokens, |m, x| m.forward(x), device),
        // spectrans' FNetBlock: pre-norm, FourierMixing, feed-forward 4·H, exact GELU.
        "fnet_block" => plain(
            TransformerBlockConfig::new(256).init(FourierMixing::new(), device)?,
            tokens,
            |m, x| m.forward(x),
            device,
        ),
        // spectrans' AFNOMixing with its defaults for H = 256, L = 1024.
        "afno" => plain(
            SpectransAfnoMixingConfig::new(256, 1024).init(device)?,
            tokens,
            |m, x| m.forward(x),
            device,
        ),
        "conv_contract" => {
            let keys = vec![(TensorKey::SCALAR, 8), (TensorKey::VECTOR, 8)];
            Box::new(Equivariant {
                conv: ConvContractConfig::new(2, keys.clone(), keys).init(device)?,
                x: Equivariant::image(device),
                target: Equivariant::image(device),
            })
        }
        other => {
            return Err(idx_flow::Error::arg(
                "case",
                format!("unknown case {other:?}; the cases are {CASES:?}"),
            ));
        }
    })
}

fn times(f: impl Fn(), runs: usize, warmup: usize) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn list(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|t| format!("{t:.3}")).collect();
    format!("[{}]", items.join(", "))
}

fn main() -> Result<(), idx_flow::Error> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--list") {
        println!("{}", CASES.join("\n"));
        return Ok(());
    }
    let number = |flag: &str, default: usize| -> Result<usize, idx_flow::Error> {
        value(flag).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| idx_flow::Error::arg("runs", format!("{flag} takes a count, got {v}")))
        })
    };
    let (runs, warmup) = (number("--runs", 15)?, number("--warmup", 3)?);
    let Some(case) = value("--case") else {
        return Err(idx_flow::Error::arg(
            "case",
            format!("--case NAME is required; the cases are {CASES:?}"),
        ));
    };
    let infer = build(&case, &Device::default())?;
    let fwd = times(|| infer.forward(), runs, warmup);
    let params = infer.params();
    drop(infer);
    let train = build(&case, &Device::default().autodiff())?;
    let step = times(|| train.step(), runs, warmup);
    println!(
        "{{\"case\": \"{case}\", \"params\": {params}, \"fwd_ms\": {}, \"step_ms\": {}}}",
        list(&fwd),
        list(&step)
    );
    Ok(())
}
