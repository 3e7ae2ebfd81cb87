//! The fused gather kernels against the plain tensor-op reference: forward and
//! every gradient, on random graphs with awkward sizes and on every graph kind,
//! and bitwise determinism across runs and thread counts.

use burn::tensor::{Device, Tensor, TensorData};
use idx_flow_healpix::geometry::HealpixGrid;
use idx_flow_healpix::graphs::ConnectionGraph;
use idx_flow_healpix::graphs::WeightMethod;
use idx_flow_kernels::{KernelPath, ReverseGraph};
use idx_flow_nn::GraphIndices;

use idx_flow_testing::rng::Rng;

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn assert_close(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 2e-5 * scale + 1e-6,
            "{what}: entry {i}: fused {x} vs reference {y} (scale {scale})"
        );
    }
}

/// One case: a graph as a flat `[n_out, k]` index list.
struct Case {
    name: String,
    indices: Vec<i64>,
    n_in: usize,
    n_out: usize,
    k: usize,
    weights: Option<Vec<f32>>,
}

impl Case {
    fn from_graph(name: &str, g: &ConnectionGraph) -> Self {
        Self {
            name: name.into(),
            indices: g.indices().to_vec(),
            n_in: g.n_in(),
            n_out: g.n_out(),
            k: g.k(),
            weights: g.weights().map(|w| w.iter().map(|&v| v as f32).collect()),
        }
    }

    fn random(rng: &mut Rng, n_in: usize, n_out: usize, k: usize, weighted: bool) -> Self {
        // Input pixel 0 is never read, so one row of the input gradient is zero.
        let indices = (0..n_out * k)
            .map(|_| 1 + rng.below(n_in - 1) as i64)
            .collect();
        let weights = weighted.then(|| rng.normal_vec(n_out * k));
        Self {
            name: format!("random n_in={n_in} n_out={n_out} k={k} weighted={weighted}"),
            indices,
            n_in,
            n_out,
            k,
            weights,
        }
    }

    fn indices(&self, path: KernelPath, device: &Device) -> GraphIndices {
        GraphIndices::from_indices(&self.indices, self.n_in, self.n_out, self.k, device)
            .unwrap()
            .with_path(path)
    }
}

/// Outputs and gradients of the three gather operations on one path.
struct Results {
    contract: Vec<f32>,
    contract_dx: Vec<f32>,
    contract_dk: Vec<f32>,
    /// The bias gradient (empty without a bias).
    contract_db: Vec<f32>,
    sum: Vec<f32>,
    sum_dx: Vec<f32>,
}

/// The sizes of one run: batch, channels, filters, and whether the
/// contraction adds a bias.
#[derive(Clone, Copy)]
struct Sizes {
    batch: usize,
    c: usize,
    f: usize,
    biased: bool,
}

fn run(case: &Case, path: KernelPath, sizes: Sizes, seed: u64) -> Results {
    let Sizes {
        batch,
        c,
        f,
        biased,
    } = sizes;
    let device = Device::default().autodiff();
    let mut rng = Rng(seed);
    let idx = case.indices(path, &device);
    let (n_in, n_out, k) = (case.n_in, case.n_out, case.k);
    let x = tensor(rng.normal_vec(batch * n_in * c), [batch, n_in, c], &device).require_grad();
    let kernel = tensor(rng.normal_vec(k * c * f), [k, c, f], &device).require_grad();
    let bias = tensor(rng.normal_vec(f), [f], &device).require_grad();
    let w = case
        .weights
        .clone()
        .map(|w| tensor(w, [n_out, k, 1], &device));
    let probe = tensor(
        rng.normal_vec(batch * n_out * f),
        [batch, n_out, f],
        &device,
    );

    let y = idx.contract(
        x.clone(),
        w.as_ref(),
        kernel.clone(),
        biased.then(|| bias.clone()),
    );
    let grads = (y.clone() * probe).sum().backward();
    let contract_dx = floats(x.grad(&grads).expect("input gradient"));
    let contract_dk = floats(kernel.grad(&grads).expect("kernel gradient"));
    let contract_db = match bias.grad(&grads) {
        Some(g) => {
            assert!(biased, "an absent bias got a gradient");
            floats(g)
        }
        None => {
            assert!(!biased, "the bias got no gradient");
            Vec::new()
        }
    };

    let sum_w = w.unwrap_or_else(|| tensor(rng.normal_vec(n_out * k), [n_out, k, 1], &device));
    let x2 = x.clone().detach().require_grad();
    let probe2 = tensor(
        rng.normal_vec(batch * n_out * c),
        [batch, n_out, c],
        &device,
    );
    let s = idx.weighted_sum(x2.clone(), &sum_w);
    let grads = (s.clone() * probe2).sum().backward();
    Results {
        contract: floats(y),
        contract_dx,
        contract_dk,
        contract_db,
        sum: floats(s),
        sum_dx: floats(x2.grad(&grads).expect("input gradient of the sum")),
    }
}

/// Fused against reference, without and with a bias.
fn check(case: &Case, batch: usize, c: usize, f: usize) {
    for biased in [false, true] {
        check_sizes(
            case,
            Sizes {
                batch,
                c,
                f,
                biased,
            },
        );
    }
}

fn check_sizes(case: &Case, sizes: Sizes) {
    let Sizes {
        batch,
        c,
        f,
        biased,
    } = sizes;
    let what = format!("{} (B={batch}, C={c}, F={f}, bias={biased})", case.name);
    let fused = run(case, KernelPath::Fused, sizes, 7);
    let reference = run(case, KernelPath::Reference, sizes, 7);
    assert_close(
        &format!("{what}: contract"),
        &fused.contract,
        &reference.contract,
    );
    assert_close(
        &format!("{what}: contract dX"),
        &fused.contract_dx,
        &reference.contract_dx,
    );
    assert_close(
        &format!("{what}: contract dK"),
        &fused.contract_dk,
        &reference.contract_dk,
    );
    assert_close(
        &format!("{what}: contract dBias"),
        &fused.contract_db,
        &reference.contract_db,
    );
    assert_close(&format!("{what}: sum"), &fused.sum, &reference.sum);
    assert_close(&format!("{what}: sum dX"), &fused.sum_dx, &reference.sum_dx);
}

#[test]
fn fused_equals_reference_on_random_graphs_with_awkward_sizes() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for &(n_in, n_out, k, c, f, batch) in &[
        (50, 37, 7, 3, 5, 1),
        (20, 61, 4, 6, 2, 3),
        (2, 3, 1, 1, 1, 1),
        (700, 313, 9, 17, 33, 2),
        // Inputs over several parts of the CPU input gradient.
        (3000, 1500, 9, 4, 6, 1),
    ] {
        for weighted in [false, true] {
            let case = Case::random(&mut rng, n_in, n_out, k, weighted);
            check(&case, batch, c, f);
            // Input pixel 0 is never read: its gradient is exactly zero.
            let sizes = Sizes {
                batch,
                c,
                f,
                biased: weighted,
            };
            let fused = run(&case, KernelPath::Fused, sizes, 3);
            for b in 0..batch {
                let row = &fused.contract_dx[b * n_in * c..][..c];
                assert!(row.iter().all(|&v| v == 0.0), "{}: unread pixel", case.name);
            }
        }
    }
}

#[test]
fn fused_equals_reference_where_far_apart_outputs_read_a_few_inputs() {
    // Inputs 0..5 are read only by outputs 0, 600, ..., 2400 and every other
    // edge reads an input from 512 on: the CPU input gradient's first part of
    // input rows holds five edges spread over the whole graph, the case it
    // orders by sorting instead of by placing edges in a table.
    let mut rng = Rng(0x5eed);
    let (n_in, n_out, k) = (4096, 3000, 3);
    let indices = (0..n_out * k)
        .map(|e| {
            let (p, j) = (e / k, e % k);
            if j == 0 && p % 600 == 0 {
                (p / 600) as i64
            } else {
                512 + rng.below(n_in - 512) as i64
            }
        })
        .collect();
    let case = Case {
        name: "far-apart readers".into(),
        indices,
        n_in,
        n_out,
        k,
        weights: Some(rng.normal_vec(n_out * k)),
    };
    check(&case, 1, 5, 7);
}

#[test]
fn fused_equals_reference_on_every_graph_kind() {
    let ring = |n| HealpixGrid::ring(n).unwrap();
    let nested = |n| HealpixGrid::nested(n).unwrap();
    let cases = [
        Case::from_graph(
            "knn ring 8→4 k=9",
            &ConnectionGraph::knn(ring(8), ring(4), 9).unwrap(),
        ),
        Case::from_graph(
            "knn ring 4→8 k=4 idw",
            &ConnectionGraph::knn(ring(4), ring(8), 4)
                .unwrap()
                .with_weights(WeightMethod::InverseSquare)
                .unwrap(),
        ),
        Case::from_graph(
            "children nested 8→4",
            &ConnectionGraph::children(nested(8), nested(4)).unwrap(),
        ),
        Case::from_graph(
            "parent nested 4→8",
            &ConnectionGraph::parent(nested(4), nested(8)).unwrap(),
        ),
        Case::from_graph(
            "stencil ring 4",
            &ConnectionGraph::stencil(ring(4)).unwrap(),
        ),
        Case::from_graph(
            "stencil nested 4",
            &ConnectionGraph::stencil(nested(4)).unwrap(),
        ),
    ];
    for case in &cases {
        check(case, 2, 3, 5);
    }
}

#[test]
fn fused_gradients_are_bitwise_identical_across_runs_and_thread_counts() {
    let mut rng = Rng(42);
    let case = Case::random(&mut rng, 3000, 1500, 9, true);
    let sizes = Sizes {
        batch: 2,
        c: 16,
        f: 24,
        biased: true,
    };
    let go = || run(&case, KernelPath::Fused, sizes, 11);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let a = go();
    let b = go();
    let one = pool(1).install(go);
    let three = pool(3).install(go);
    for (name, other) in [
        ("second run", &b),
        ("one thread", &one),
        ("three threads", &three),
    ] {
        assert_eq!(a.contract, other.contract, "{name}: forward");
        assert_eq!(a.contract_dx, other.contract_dx, "{name}: dX");
        assert_eq!(a.contract_dk, other.contract_dk, "{name}: dK");
        assert_eq!(a.contract_db, other.contract_db, "{name}: dBias");
        assert_eq!(a.sum, other.sum, "{name}: sum");
        assert_eq!(a.sum_dx, other.sum_dx, "{name}: sum dX");
    }
}

#[test]
fn the_reverse_graph_lists_each_pixels_edges_by_slot_then_output() {
    // Three outputs of k = 2: pixel 2 is read by (p, j) = (0, 0), (1, 0), (1, 1).
    let rev = ReverseGraph::new(&[2, 0, 2, 2, 1, 0], 4, 2);
    assert_eq!(rev.offsets, vec![0, 2, 3, 6, 6]);
    assert_eq!(rev.edges, vec![1, 5, 4, 0, 2, 3]);
    // Two outputs of k = 3: pixel 2 is read by (0, 0), (0, 2), (1, 0); slot 0
    // comes first, so edge 3 = (1, 0) precedes edge 2 = (0, 2).
    let rev = ReverseGraph::new(&[2, 0, 2, 2, 1, 0], 4, 3);
    assert_eq!(rev.offsets, vec![0, 2, 3, 6, 6]);
    assert_eq!(rev.edges, vec![1, 5, 4, 0, 3, 2]);
}

#[test]
fn the_slot_lists_name_each_pixel_once_per_slot_with_its_first_edge() {
    let rev = ReverseGraph::new(&[2, 0, 2, 2, 1, 0], 4, 3);
    // Slot 0 reads pixel 2 (twice, from rev.edges[3]); slot 1 pixels 0 and 1;
    // slot 2 pixels 0 and 2. Pixel 3 is read by no slot.
    let packed = rev.slot_rows(3);
    assert_eq!(&packed[..4], &[0, 1, 3, 5], "offsets");
    assert_eq!(&packed[4..9], &[2, 0, 1, 0, 2], "pixels");
    assert_eq!(&packed[9..], &[3, 0, 2, 1, 5], "first edges");
    // The CPU kernels never read them, so a CPU graph carries none.
    let graph = idx_flow_kernels::DeviceGraph::new(
        &[2, 0, 2, 2, 1, 0],
        4,
        2,
        3,
        &burn::tensor::Device::flex(),
    );
    assert_eq!(graph.rev_slots.dims(), [0]);
}
