//! The CubeCL kernels on the wgpu device against a plain tensor-op reference
//! (`select`, then `matmul`) computed on the CPU: forward and every gradient
//! of `gather_contract` and `gather_sum`, on random graphs with awkward sizes,
//! weighted and not, bitwise determinism across runs, and reduced precision
//! where the adapter supports it.
//!
//! Needs a wgpu adapter:
//! `cargo test --release -p idx-flow-kernels --features vulkan --test gpu_kernels`.
//! Passes on an NVIDIA H100 (Vulkan driver 580) and on Mesa 26's software
//! Vulkan (lavapipe), which `.ci/gpu-tests` sets up in a Debian trixie chroot
//! for machines without a GPU. Mesa 22.3's lavapipe (Debian 12) is no
//! substitute: it segfaults while building the pipeline of any of our kernels
//! that declares shared memory (burn's own autotuned matmul too).

use std::sync::{Mutex, MutexGuard};

use burn::tensor::{DType, Device, DeviceKind, FloatDType, Int, Tensor, TensorData};
use idx_flow_kernels::{DeviceGraph, ReverseGraph, gather_contract, gather_sum};

use idx_flow_testing::rng::Rng;

/// The GPU, with tensor cores allowed or not for the caller's test. The
/// switch is process-wide, so the GPU tests take turns: the guard keeps the
/// others out until the caller is done.
fn gpu(tensor_cores: bool) -> (Device, MutexGuard<'static, ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one may still run.
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    idx_flow_kernels::set_options(idx_flow_kernels::KernelOptions {
        tensor_cores,
        ..idx_flow_kernels::KernelOptions::default()
    });
    (Device::wgpu(DeviceKind::DefaultDevice), turn)
}

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

fn tensor<const D: usize>(v: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), device)
}

/// Every entry within `rel` of the largest reference entry, plus `floor`.
fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, floor: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= rel * scale + floor,
            "{what}: entry {i}: gpu {g} vs reference {w} (scale {scale})"
        );
    }
}

/// A random graph `[n_out, k]` over `n_in` pixels, with per-edge weights.
/// Input pixel 0 is never read, so its gradient rows must come out zero.
struct Case {
    indices: Vec<i64>,
    weights: Vec<f32>,
    n_in: usize,
    n_out: usize,
    k: usize,
}

impl Case {
    fn random(rng: &mut Rng, n_in: usize, n_out: usize, k: usize) -> Self {
        Self {
            indices: (0..n_out * k)
                .map(|_| 1 + rng.below(n_in - 1) as i64)
                .collect(),
            weights: rng.uniform_vec(n_out * k),
            n_in,
            n_out,
            k,
        }
    }
}

/// The operands of one case, as host data.
struct Inputs {
    x: Vec<f32>,
    kernel: Vec<f32>,
    bias: Vec<f32>,
    probe_contract: Vec<f32>,
    probe_sum: Vec<f32>,
}

impl Inputs {
    fn random(rng: &mut Rng, case: &Case, batch: usize, c: usize, f: usize) -> Self {
        Self {
            x: rng.uniform_vec(batch * case.n_in * c),
            kernel: rng.uniform_vec(case.k * c * f),
            bias: rng.uniform_vec(f),
            probe_contract: rng.uniform_vec(batch * case.n_out * f),
            probe_sum: rng.uniform_vec(batch * case.n_out * c),
        }
    }
}

/// Outputs and gradients of the two operations.
#[derive(PartialEq)]
struct Results {
    contract: Vec<f32>,
    contract_dx: Vec<f32>,
    contract_dk: Vec<f32>,
    /// Empty where the contraction has no bias.
    contract_db: Vec<f32>,
    sum: Vec<f32>,
    sum_dx: Vec<f32>,
}

/// The fused operations on `device` (autodiff added here), the loss of each
/// being `Σ Y·probe`, computed in `dtype`; the weighted contraction also adds
/// a bias (so both kernel variants run). With `slot_lists` the graph gets
/// its per-slot lists whatever its shape (the input gradient runs slot by
/// slot), without them none (one launch over every input row).
fn fused(
    case: &Case,
    inp: &Inputs,
    dims: (usize, usize, usize),
    weighted: bool,
    dtype: FloatDType,
    device: &Device,
    slot_lists: bool,
) -> Results {
    let (batch, c, f) = dims;
    let device = device.clone().autodiff();
    let mut graph = DeviceGraph::new(&case.indices, case.n_in, case.n_out, case.k, &device);
    // Either input gradient kernel, whichever the graph would choose.
    let packed = if slot_lists {
        ReverseGraph::new(&case.indices, case.n_in, case.k).slot_rows(case.k)
    } else {
        Vec::new()
    };
    let len = packed.len();
    graph.rev_slots = Tensor::from_data(TensorData::new(packed, [len]), &device);
    let w = tensor(&case.weights, [case.n_out, case.k], &device).cast(dtype);
    let x = tensor(&inp.x, [batch, case.n_in, c], &device)
        .cast(dtype)
        .require_grad();
    let kernel = tensor(&inp.kernel, [case.k * c, f], &device)
        .cast(dtype)
        .require_grad();
    let bias = tensor(&inp.bias, [f], &device).cast(dtype).require_grad();
    let probe = tensor(&inp.probe_contract, [batch, case.n_out, f], &device).cast(dtype);
    let y = gather_contract(
        x.clone(),
        &graph,
        weighted.then(|| w.clone()),
        kernel.clone(),
        weighted.then(|| bias.clone()),
    );
    let grads = (y.clone() * probe).sum().backward();
    let contract_dx = floats(x.grad(&grads).expect("contract input gradient"));
    let contract_dk = floats(kernel.grad(&grads).expect("contract kernel gradient"));
    let contract_db = bias.grad(&grads).map(floats).unwrap_or_default();
    assert_eq!(
        contract_db.is_empty(),
        !weighted,
        "bias gradient present iff biased"
    );

    let x2 = x.detach().require_grad();
    let probe = tensor(&inp.probe_sum, [batch, case.n_out, c], &device).cast(dtype);
    let s = gather_sum(x2.clone(), &graph, w);
    let grads = (s.clone() * probe).sum().backward();
    Results {
        contract: floats(y),
        contract_dx,
        contract_dk,
        contract_db,
        sum: floats(s),
        sum_dx: floats(x2.grad(&grads).expect("sum input gradient")),
    }
}

/// The same with plain tensor operations on the CPU: the gathered copy by
/// `select`, the contraction by `matmul`.
fn reference(case: &Case, inp: &Inputs, dims: (usize, usize, usize), weighted: bool) -> Results {
    let (batch, c, f) = dims;
    let (n_in, n_out, k) = (case.n_in, case.n_out, case.k);
    // Explicitly flex: with the wgpu feature on, `Device::default()` is the GPU.
    let device = Device::flex().autodiff();
    let idx =
        Tensor::<1, Int>::from_data(TensorData::new(case.indices.clone(), [n_out * k]), &device);
    let w = tensor(&case.weights, [1, n_out, k, 1], &device);
    let gather = |x: Tensor<3>| x.select(1, idx.clone()).reshape([batch, n_out, k, c]);

    let x = tensor(&inp.x, [batch, n_in, c], &device).require_grad();
    let kernel = tensor(&inp.kernel, [k * c, f], &device).require_grad();
    let bias = tensor(&inp.bias, [f], &device).require_grad();
    let mut a = gather(x.clone());
    if weighted {
        a = a * w.clone();
    }
    let mut y = a
        .reshape([batch * n_out, k * c])
        .matmul(kernel.clone())
        .reshape([batch, n_out, f]);
    if weighted {
        y = y + bias.clone().reshape([1, 1, f]);
    }
    let probe = tensor(&inp.probe_contract, [batch, n_out, f], &device);
    let grads = (y.clone() * probe).sum().backward();
    let contract_dx = floats(x.grad(&grads).expect("contract input gradient"));
    let contract_dk = floats(kernel.grad(&grads).expect("contract kernel gradient"));
    let contract_db = bias.grad(&grads).map(floats).unwrap_or_default();

    let x2 = x.detach().require_grad();
    let s: Tensor<3> = (gather(x2.clone()) * w)
        .sum_dim(2)
        .reshape([batch, n_out, c]);
    let probe = tensor(&inp.probe_sum, [batch, n_out, c], &device);
    let grads = (s.clone() * probe).sum().backward();
    Results {
        contract: floats(y),
        contract_dx,
        contract_dk,
        contract_db,
        sum: floats(s),
        sum_dx: floats(x2.grad(&grads).expect("sum input gradient")),
    }
}

fn compare(what: &str, got: &Results, want: &Results, rel: f32) {
    compare_to(what, got, want, rel, 1e-6);
}

/// [`compare`] with the absolute `floor` given (0: relative to each result's
/// largest entry alone, for results far from 1 in magnitude).
fn compare_to(what: &str, got: &Results, want: &Results, rel: f32, floor: f32) {
    assert_close(
        &format!("{what}: contract"),
        &got.contract,
        &want.contract,
        rel,
        floor,
    );
    assert_close(
        &format!("{what}: contract dX"),
        &got.contract_dx,
        &want.contract_dx,
        rel,
        floor,
    );
    assert_close(
        &format!("{what}: contract dK"),
        &got.contract_dk,
        &want.contract_dk,
        rel,
        floor,
    );
    assert_close(
        &format!("{what}: contract dBias"),
        &got.contract_db,
        &want.contract_db,
        rel,
        floor,
    );
    assert_close(&format!("{what}: sum"), &got.sum, &want.sum, rel, floor);
    assert_close(
        &format!("{what}: sum dX"),
        &got.sum_dx,
        &want.sum_dx,
        rel,
        floor,
    );
}

/// Sizes that exercise every tiling (F ≤ 16, ≤ 32, > 32), partial tiles in
/// every direction, channel counts below and above a thread's channel block,
/// several kernel-gradient row groups, and batch 1.
const SIZES: &[(usize, usize, usize, usize, usize, usize)] = &[
    // (n_in, n_out, k, C, F, batch)
    (50, 37, 7, 3, 5, 1),
    (50, 37, 7, 3, 5, 3),
    (20, 61, 4, 6, 20, 3),
    (2, 3, 1, 1, 1, 1),
    (700, 313, 9, 17, 33, 2),
    (300, 1200, 4, 2, 70, 1),
];

#[test]
fn gpu_kernels_equal_the_reference_on_random_graphs() {
    let (device, _turn) = gpu(false);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for &(n_in, n_out, k, c, f, batch) in SIZES {
        let case = Case::random(&mut rng, n_in, n_out, k);
        let inp = Inputs::random(&mut rng, &case, batch, c, f);
        for weighted in [false, true] {
            let what = format!(
                "n_in={n_in} n_out={n_out} k={k} C={c} F={f} B={batch} weighted={weighted}"
            );
            let want = reference(&case, &inp, (batch, c, f), weighted);
            for slot_lists in [true, false] {
                let what = format!("{what} slot_lists={slot_lists}");
                let got = fused(
                    &case,
                    &inp,
                    (batch, c, f),
                    weighted,
                    FloatDType::F32,
                    &device,
                    slot_lists,
                );
                compare(&what, &got, &want, 2e-5);
                for b in 0..batch {
                    let row = &got.contract_dx[b * n_in * c..][..c];
                    assert!(row.iter().all(|&v| v == 0.0), "{what}: unread pixel");
                }
            }
        }
    }
}

#[test]
fn gpu_kernels_are_bitwise_deterministic() {
    let mut rng = Rng(42);
    let case = Case::random(&mut rng, 3000, 1500, 9);
    let dims = (2, 16, 24);
    let inp = Inputs::random(&mut rng, &case, dims.0, dims.1, dims.2);
    // The scalar kernels, then the tensor-core ones (f32 split into f16
    // halves) where the adapter has them.
    for tensor_cores in [false, true] {
        let (device, _turn) = gpu(tensor_cores);
        let first = fused(&case, &inp, dims, true, FloatDType::F32, &device, true);
        for _ in 0..3 {
            let again = fused(&case, &inp, dims, true, FloatDType::F32, &device, true);
            assert!(
                again == first,
                "a second run differs (tensor cores {tensor_cores})"
            );
        }
    }
}

#[test]
fn gpu_kernels_run_in_reduced_precision_where_supported() {
    let (device, _turn) = gpu(false);
    let mut rng = Rng(7);
    let case = Case::random(&mut rng, 200, 150, 9);
    let dims = (2, 8, 40);
    let inp = Inputs::random(&mut rng, &case, dims.0, dims.1, dims.2);
    let want = reference(&case, &inp, dims, true);
    let mut ran = 0;
    for (dtype, rel) in [(FloatDType::F16, 1e-2), (FloatDType::BF16, 5e-2)] {
        if !device.supports_dtype(DType::from(dtype)) {
            eprintln!("{dtype:?} is not supported by this adapter: skipped");
            continue;
        }
        let got = fused(&case, &inp, dims, true, dtype, &device, true);
        compare(&format!("{dtype:?}"), &got, &want, rel);
        ran += 1;
    }
    eprintln!("reduced precision: {ran} dtype(s) checked");
}

/// The tensor-core forward, kernel gradient and input gradient (per slot,
/// and in one launch) against the f32 reference, on shapes that leave partial tiles in rows,
/// columns (F = 5, 70) and reduction depth (k·C not a multiple of the staged
/// depth), weighted and biased or not: f16 (and bf16 where the adapter
/// computes in it) to their precision, and f32, whose operands are split
/// into two f16 halves each, to f32's. Where the adapter offers no suitable
/// cooperative matrices, the scalar kernels run and the test says so.
#[test]
fn gpu_tensor_core_kernels_equal_the_reference_where_supported() {
    let (device, _turn) = gpu(true);
    let mut rng = Rng(0x7e45);
    let before = idx_flow_kernels::tensor_core_launches();
    let mut checked = 0;
    // The fewest tensor-core launches one case made, per dtype checked.
    let mut fewest: Vec<(FloatDType, u64)> = Vec::new();
    for &(n_in, n_out, k, c, f, batch) in &[
        (50, 37, 7, 3, 5, 1),
        (700, 313, 9, 17, 33, 2),
        (300, 1200, 4, 2, 70, 1),
        (400, 100, 4, 16, 64, 3),
    ] {
        let case = Case::random(&mut rng, n_in, n_out, k);
        let inp = Inputs::random(&mut rng, &case, batch, c, f);
        for weighted in [false, true] {
            let want = reference(&case, &inp, (batch, c, f), weighted);
            for (dtype, rel) in [
                (FloatDType::F32, 1e-5),
                (FloatDType::F16, 1e-2),
                (FloatDType::BF16, 5e-2),
            ] {
                if !device.supports_dtype(DType::from(dtype)) {
                    continue;
                }
                // The input gradient per slot, and in one launch.
                for slot_lists in [true, false] {
                    let start = idx_flow_kernels::tensor_core_launches();
                    let got = fused(
                        &case,
                        &inp,
                        (batch, c, f),
                        weighted,
                        dtype,
                        &device,
                        slot_lists,
                    );
                    let made = idx_flow_kernels::tensor_core_launches() - start;
                    match fewest.iter_mut().find(|(d, _)| *d == dtype) {
                        Some((_, n)) => *n = (*n).min(made),
                        None => fewest.push((dtype, made)),
                    }
                    let what = format!(
                        "tensor cores {dtype:?} n_in={n_in} n_out={n_out} k={k} C={c} F={f} B={batch} weighted={weighted} slot_lists={slot_lists}"
                    );
                    compare(&what, &got, &want, rel);
                    checked += 1;
                }
            }
        }
    }
    let launches = idx_flow_kernels::tensor_core_launches() - before;
    eprintln!("tensor cores: {checked} cases checked, {launches} tensor-core launches");
    if launches == 0 {
        eprintln!("this adapter offers no suitable cooperative matrices: scalar kernels checked");
    } else {
        // Where any ran on tensor cores, f32 (split into f16, as f16 runs)
        // and f16 must have run every case there: the forward, the kernel
        // gradient and at least one input-gradient launch, per slot or not.
        for (dtype, made) in &fewest {
            if matches!(dtype, FloatDType::F32 | FloatDType::F16) {
                assert!(
                    *made >= 3,
                    "{dtype:?}: a case made only {made} tensor-core launches"
                );
            }
        }
    }
}

/// f32 on tensor cores keeps f32's range and precision where f16 alone has
/// neither: inputs far beyond f16's largest value (65504) or deep in its
/// subnormals, and a wide spread of magnitudes within one tensor, against
/// the f32 reference to f32's tolerance. About 25 output pixels read each
/// input through each slot, with cotangents of one sign: the input
/// gradient's sums (per slot, and in one launch) exceed f16's range unless
/// scaled by their edge counts.
#[test]
fn gpu_tensor_core_f32_keeps_the_range_and_precision_of_f32() {
    let (device, _turn) = gpu(true);
    let mut rng = Rng(0x5eed);
    let before = idx_flow_kernels::tensor_core_launches();
    let (n_in, n_out, k, c, f, batch) = (12, 300, 5, 6, 20, 2);
    let case = Case::random(&mut rng, n_in, n_out, k);
    let base = Inputs::random(&mut rng, &case, batch, c, f);
    // (input scale, kernel scale, cotangent scale, spread of the input over
    // 2^±spread).
    for (sx, sk, sp, spread) in [
        (3.0e5f32, 1.0e-3f32, 2.0e4f32, 0i32),
        (1.0e-6, 1.0e-5, 1.0e-7, 0),
        (1.0, 1.0, 1.0, 12),
    ] {
        let mut inp = Inputs {
            x: base.x.iter().map(|v| v * sx).collect(),
            kernel: base.kernel.iter().map(|v| v * sk).collect(),
            bias: base.bias.iter().map(|v| v * sx * sk).collect(),
            probe_contract: base.probe_contract.iter().map(|v| v.abs() * sp).collect(),
            probe_sum: base.probe_sum.clone(),
        };
        for (i, v) in inp.x.iter_mut().enumerate() {
            *v *= 2f32.powi((i as i32 * 7919) % (2 * spread + 1) - spread);
        }
        for weighted in [false, true] {
            let want = reference(&case, &inp, (batch, c, f), weighted);
            for slot_lists in [true, false] {
                let got = fused(
                    &case,
                    &inp,
                    (batch, c, f),
                    weighted,
                    FloatDType::F32,
                    &device,
                    slot_lists,
                );
                let what = format!(
                    "f32 on tensor cores, x·{sx} K·{sk} dY·{sp} spread 2^±{spread} weighted={weighted} slot_lists={slot_lists}"
                );
                compare_to(&what, &got, &want, 1e-5, 0.0);
            }
        }
    }
    let launches = idx_flow_kernels::tensor_core_launches() - before;
    eprintln!("f32 range: {launches} tensor-core launches");
}

/// The adapter runs burn's own kernels: tells a broken driver from a broken
/// kernel of ours.
#[test]
fn gpu_device_runs_a_plain_operation() {
    let (device, _turn) = gpu(false);
    let x = tensor(&[1.0, 2.0, 3.0], [3], &device);
    assert_eq!(floats(x + 1.0), vec![2.0, 3.0, 4.0]);
}
