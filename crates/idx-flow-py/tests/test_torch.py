"""idx_flow_rs.torch against idx_flow 0.2.1: the stored reference layers of
the fixture manifest, idx_flow itself where it is installed, and idx_flow's
torch expression (gather, einsum) on graphs of other shapes; the operators'
registrations (opcheck, torch.compile), determinism and errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from idx_flow_rs import compute_connection_indices  # noqa: E402
from idx_flow_rs import torch as rs  # noqa: E402

from conftest import fixtures_dir, read_safetensors  # noqa: E402

CLASSES = {
    "SpatialConv": rs.SpatialConv,
    "SpatialTransposeConv": rs.SpatialTransposeConv,
    "SpatialUpsampling": rs.SpatialUpsampling,
}
TOL = dict(rtol=1e-5, atol=1e-5)


def assert_close_to_scale(got, want, name):
    """Within 1e-5 of the reference's largest value: a kernel gradient sums
    B·N_out products, and float32 sums in two orders (einsum's, our tiles')
    differ by more than 1e-5 of a single element (both lie as near the
    float64 value; test_kernel_gradients_are_as_accurate_as_idx_flows)."""
    scale = float(want.abs().max()) if want.numel() else 0.0
    diff = float((got - want).abs().max()) if want.numel() else 0.0
    assert diff <= 1e-5 * max(scale, 1.0), f"{name}: differs by {diff:.3g}, largest value {scale:.3g}"


def nside_of(npix: int) -> int:
    nside = math.isqrt(npix // 12)
    assert 12 * nside * nside == npix, f"{npix} pixels is not a HEALPix grid"
    return nside


# ------------------------------------------------------- the stored references


@pytest.fixture(scope="module")
def layer_arrays():
    return read_safetensors(fixtures_dir() / "layers.safetensors")


def spatial_cases(manifest):
    return [
        (name, entry["class"])
        for name, entry in manifest["layers"].items()
        if entry["class"] in CLASSES
    ]


def stored(arrays, name):
    prefix = name + "."
    return {k[len(prefix):]: v.copy() for k, v in arrays.items() if k.startswith(prefix)}


def module_from_stored(cls_name, case):
    indices = case["buffer.connection_indices"]
    if cls_name == "SpatialUpsampling":
        # The weights come from the stored buffer below; the constructor's own
        # are checked in test_upsampling_weights_equal_idx_flows.
        m = rs.SpatialUpsampling(indices.shape[0], indices, np.ones(indices.shape))
    else:
        w = case.get("buffer.kernel_weights")
        m = CLASSES[cls_name](
            indices.shape[0],
            indices,
            kernel_weights=None if w is None else w[..., 0],
            filters=case["param.kernel"].shape[2],
            bias="param.bias_param" in case,
        )
    state = {
        k.split(".", 1)[1]: torch.from_numpy(v.copy())
        for k, v in case.items()
        if k.startswith(("param.", "buffer."))
    }
    m.load_state_dict(state, strict=True)
    return m


def test_every_spatial_layer_of_the_manifest_matches_idx_flow(manifest, layer_arrays):
    cases = spatial_cases(manifest)
    assert cases, "the manifest lists no SpatialConv / SpatialTransposeConv / SpatialUpsampling"
    for name, cls_name in cases:
        case = stored(layer_arrays, name)
        m = module_from_stored(cls_name, case)
        x = torch.from_numpy(case["input"].copy()).requires_grad_(True)
        y = m(x)
        torch.testing.assert_close(y, torch.from_numpy(case["output"]), **TOL, msg=name)
        (y * torch.from_numpy(case["output_cotangent"])).sum().backward()
        torch.testing.assert_close(x.grad, torch.from_numpy(case["grad.input"]), **TOL, msg=name)
        grads = {k[len("grad.param."):]: v for k, v in case.items() if k.startswith("grad.param.")}
        for pname, p in m.named_parameters():
            assert pname in grads, f"{name}: idx_flow recorded no gradient for {pname}"
            assert_close_to_scale(p.grad, torch.from_numpy(grads[pname]), f"{name}.{pname}")
        assert set(grads) == {n for n, _ in m.named_parameters()}, name


def test_kernel_gradients_are_as_accurate_as_idx_flows(manifest, layer_arrays):
    # Against the float64 value of the same sum, ours is no farther than
    # idx_flow's own float32 einsum.
    for name, cls_name in spatial_cases(manifest):
        case = stored(layer_arrays, name)
        if "grad.param.kernel" not in case:
            continue
        m = module_from_stored(cls_name, case)
        cotangent = torch.from_numpy(case["output_cotangent"].copy())
        (m(torch.from_numpy(case["input"].copy())) * cotangent).sum().backward()
        neighbors = torch.from_numpy(case["input"]).double()[:, torch.from_numpy(case["buffer.connection_indices"]), :]
        if "buffer.kernel_weights" in case:
            neighbors = neighbors * torch.from_numpy(case["buffer.kernel_weights"]).double()
        exact = torch.einsum("bpkc,bpf->kcf", neighbors, cotangent.double())
        ours = float((m.kernel.grad.double() - exact).abs().max())
        theirs = float((torch.from_numpy(case["grad.param.kernel"]).double() - exact).abs().max())
        assert ours <= theirs, f"{name}: ours {ours:.3g} from the float64 value, idx_flow's {theirs:.3g}"


def test_upsampling_weights_equal_idx_flows(manifest, layer_arrays):
    cases = [(n, c) for n, c in spatial_cases(manifest) if c == "SpatialUpsampling"]
    for name, _ in cases:
        case = stored(layer_arrays, name)
        indices = case["buffer.connection_indices"]
        n_in, n_out, k = case["input"].shape[1], indices.shape[0], indices.shape[1]
        ours, distances = compute_connection_indices(nside_of(n_in), nside_of(n_out), k)
        np.testing.assert_array_equal(ours, indices)
        interpolation = name.rsplit("_", 1)[1]
        m = rs.SpatialUpsampling(n_out, ours, distances, interpolation=interpolation)
        np.testing.assert_allclose(
            m.interpolation_weights.numpy(), case["buffer.interpolation_weights"], rtol=1e-6, atol=1e-7
        )


# ---------------------------------------- idx_flow's torch expression, any shape


def reference_conv(x, indices, weights, kernel, bias):
    neighbors = x[:, indices, :]
    if weights is not None:
        neighbors = neighbors * weights.unsqueeze(-1)
    y = torch.einsum("bpkc,kcf->bpf", neighbors, kernel)
    return y if bias is None else y + bias


def random_graph(gen, n_in, n_out, k):
    return torch.randint(0, n_in, (n_out, k), generator=gen)


SHAPES = [
    # batch, n_in, n_out, k, channels, filters
    (1, 1, 1, 1, 1, 1),
    (2, 5, 7, 3, 1, 4),
    (3, 48, 12, 4, 3, 5),
    (2, 300, 1200, 9, 7, 2),
    (1, 2000, 500, 2, 33, 17),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("biased", [False, True])
def test_gather_contract_and_its_gradients_equal_the_torch_expression(shape, weighted, biased):
    b, n_in, n_out, k, c, f = shape
    gen = torch.Generator().manual_seed(hash((shape, weighted, biased)) % 2**31)
    indices = random_graph(gen, n_in, n_out, k)
    w = torch.rand(n_out, k, generator=gen) if weighted else None
    x = torch.randn(b, n_in, c, generator=gen, requires_grad=True)
    kernel = torch.randn(k, c, f, generator=gen, requires_grad=True)
    bias = torch.randn(f, generator=gen, requires_grad=True) if biased else None
    dy = torch.randn(b, n_out, f, generator=gen)

    offsets, edges = rs.reverse_graph(indices, n_in)
    y = rs.gather_contract(x, indices, offsets, edges, w, kernel, bias)
    grads = torch.autograd.grad((y * dy).sum(), [x, kernel] + ([bias] if biased else []))

    x_ref = x.detach().double().requires_grad_(True)
    k_ref = kernel.detach().double().requires_grad_(True)
    b_ref = bias.detach().double().requires_grad_(True) if biased else None
    y_ref = reference_conv(x_ref, indices, None if w is None else w.double(), k_ref, b_ref)
    refs = torch.autograd.grad((y_ref * dy.double()).sum(), [x_ref, k_ref] + ([b_ref] if biased else []))

    torch.testing.assert_close(y, y_ref.float(), **TOL)
    torch.testing.assert_close(grads[0], refs[0].float(), **TOL)
    # The kernel's and the bias's gradients sum B·N_out products.
    for g, r in zip(grads[1:], refs[1:]):
        assert_close_to_scale(g.double(), r, "parameter gradient")


@pytest.mark.parametrize("shape", SHAPES)
def test_gather_sum_and_its_gradient_equal_the_torch_expression(shape):
    b, n_in, n_out, k, c, _ = shape
    gen = torch.Generator().manual_seed(n_in * 31 + k)
    indices = random_graph(gen, n_in, n_out, k)
    w = torch.rand(n_out, k, generator=gen)
    x = torch.randn(b, n_in, c, generator=gen, requires_grad=True)
    dy = torch.randn(b, n_out, c, generator=gen)
    offsets, edges = rs.reverse_graph(indices, n_in)
    y = rs.gather_sum(x, indices, offsets, edges, w)
    (gx,) = torch.autograd.grad((y * dy).sum(), [x])
    x_ref = x.detach().double().requires_grad_(True)
    y_ref = (x_ref[:, indices, :] * w.double().unsqueeze(-1)).sum(dim=2)
    (gx_ref,) = torch.autograd.grad((y_ref * dy.double()).sum(), [x_ref])
    torch.testing.assert_close(y, y_ref.float(), **TOL)
    torch.testing.assert_close(gx, gx_ref.float(), **TOL)


# ------------------------------------------------------- the operators' contract


def opcheck_args():
    gen = torch.Generator().manual_seed(5)
    indices = random_graph(gen, 30, 20, 4)
    offsets, edges = rs.reverse_graph(indices, 30)
    x = torch.randn(2, 30, 3, generator=gen, requires_grad=True)
    kernel = torch.randn(4, 3, 6, generator=gen, requires_grad=True)
    bias = torch.randn(6, generator=gen, requires_grad=True)
    w = torch.rand(20, 4, generator=gen)
    return indices, offsets, edges, x, kernel, bias, w


def test_opcheck_passes_for_every_operator():
    indices, offsets, edges, x, kernel, bias, w = opcheck_args()
    dy = torch.randn(2, 20, 6)
    torch.library.opcheck(rs.gather_contract, (x, indices, offsets, edges, w, kernel, bias))
    torch.library.opcheck(rs.gather_contract, (x, indices, offsets, edges, None, kernel, None))
    torch.library.opcheck(rs.gather_sum, (x, indices, offsets, edges, w))
    torch.library.opcheck(
        torch.ops.idx_flow_rs.gather_contract_grad_input.default, (dy, offsets, edges, w, kernel.detach())
    )
    torch.library.opcheck(
        torch.ops.idx_flow_rs.gather_contract_grad_kernel.default, (x.detach(), indices, w, dy)
    )
    torch.library.opcheck(
        torch.ops.idx_flow_rs.gather_sum_grad_input.default, (torch.randn(2, 20, 3), offsets, edges, w)
    )


def test_torch_compile_traces_the_modules():
    down, _ = compute_connection_indices(8, 4, 4)
    up, distances = compute_connection_indices(4, 8, 4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        rs.SpatialConv(192, down, filters=8),
        torch.nn.Tanh(),
        rs.SpatialUpsampling(768, up, distances, interpolation="idw"),
    )
    x = torch.randn(2, 768, 3)
    eager = model(x)  # also creates the lazy parameters
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), eager, **TOL)

    grads = []
    for run in (compiled, model):
        model.zero_grad()
        xg = x.clone().requires_grad_(True)
        run(xg).square().sum().backward()
        grads.append((xg.grad, model[0].kernel.grad.clone()))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


def test_gradients_are_bitwise_the_same_run_to_run():
    gen = torch.Generator().manual_seed(9)
    indices = random_graph(gen, 3000, 800, 9)
    conv = rs.SpatialConv(800, indices.numpy(), kernel_weights=torch.rand(800, 9, generator=gen).numpy(), filters=16)
    x = torch.randn(3, 3000, 8, generator=gen)
    conv(x)
    runs = []
    for _ in range(2):
        conv.zero_grad()
        xg = x.clone().requires_grad_(True)
        conv(xg).square().sum().backward()
        runs.append((xg.grad.clone(), conv.kernel.grad.clone()))
    for a, b in zip(*runs):
        assert torch.equal(a, b)


# ------------------------------------------------------------- the modules


def test_modules_hold_idx_flows_names_and_load_state_dicts_before_their_first_forward():
    indices, distances, weights = compute_connection_indices(8, 4, 4, return_weights=True)
    torch.manual_seed(3)
    a = rs.SpatialConv(192, indices, kernel_weights=weights, filters=6)
    a(torch.randn(1, 768, 2))
    state = a.state_dict()
    assert set(state) == {"connection_indices", "kernel_weights", "kernel", "bias_param"}
    b = rs.SpatialConv(192, indices, kernel_weights=weights, filters=6)
    b.load_state_dict(state)
    x = torch.randn(2, 768, 2)
    assert torch.equal(a(x), b(x))
    up = rs.SpatialUpsampling(192, indices, distances)
    assert set(up.state_dict()) == {"connection_indices", "interpolation_weights"}


def test_other_dtypes_fall_back_to_idx_flows_expression():
    indices, _ = compute_connection_indices(8, 4, 4)
    conv = rs.SpatialConv(192, indices, filters=4)
    x = torch.randn(2, 768, 3)
    y32 = conv(x)
    conv64 = conv.double()
    y64 = conv64(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), y32, **TOL)


def test_bad_input_gives_errors_naming_what_is_wrong():
    indices, _ = compute_connection_indices(8, 4, 4)
    conv = rs.SpatialConv(192, indices, filters=4)
    with pytest.raises(ValueError, match=r"indices\[\d+\] is \d+, expected a value in 0\.\.100"):
        conv(torch.randn(1, 100, 3))
    with pytest.raises(ValueError, match=r"expected \[B, N_in, C\]"):
        conv(torch.randn(768, 3))
    offsets, edges = rs.reverse_graph(torch.from_numpy(indices), 768)
    with pytest.raises(ValueError, match="expected torch.float32"):
        rs.gather_contract(torch.randn(1, 768, 3).double(), torch.from_numpy(indices), offsets, edges, None, torch.randn(4, 3, 2).double(), None)
    with pytest.raises(ValueError, match="the kernel's second dimension is 5, expected 3"):
        rs.gather_contract(torch.randn(1, 768, 3), torch.from_numpy(indices), offsets, edges, None, torch.randn(4, 5, 2), None)
    with pytest.raises(ValueError, match="Unknown initialization method"):
        rs.SpatialConv(192, indices, weight_init="glorot")
    with pytest.raises(ValueError, match="Unsupported interpolation method"):
        rs.SpatialUpsampling(192, indices, np.ones(indices.shape), interpolation="cubic")
    with pytest.raises(ValueError, match="expected a value in 0..10"):
        rs.reverse_graph(torch.from_numpy(indices), 10)


# ------------------------------------------------ large results kept for reuse


def test_a_reused_result_buffer_holds_only_the_new_result():
    # Outputs of 4 MiB and more come from the buffers kept for reuse, which
    # still hold their last values: the kernels must overwrite every one.
    b, n_in, n_out, k, c, f = 8, 12288, 3072, 4, 32, 64  # dX is twice Y: n_in·c = 2·n_out·f
    y_bytes, dx_bytes = 4 * b * n_out * f, 4 * b * n_in * c
    gen = torch.Generator().manual_seed(11)
    indices = random_graph(gen, n_in, n_out, k)
    offsets, edges = rs.reverse_graph(indices, n_in)
    kernel = torch.randn(k, c, f, generator=gen)
    rs.empty_cache()
    # Two results of the sizes of y and dx with no value zero (a fresh
    # mapping is zeros, which would hide a value left unwritten).
    ones = torch.full((b, n_in, c), 1e3)
    y = rs.gather_contract(ones, indices, offsets, edges, None, kernel, None)
    wide = torch.randn(k, c, 2 * f, generator=gen)
    dx = rs.gather_contract(ones, indices, offsets, edges, None, wide, None)
    assert y.numel() * 4 == y_bytes and dx.numel() * 4 == dx_bytes and bool((dx != 0).all())
    del y, dx
    kept = rs.cached_bytes()
    assert kept >= y_bytes + dx_bytes

    x = torch.randn(b, n_in, c, generator=gen)
    dy = torch.randn(b, n_out, f, generator=gen)
    y = rs.gather_contract(x, indices, offsets, edges, None, kernel, None)
    dx = rs.gather_contract_grad_input(dy, offsets, edges, None, kernel)
    assert rs.cached_bytes() == kept - y_bytes - dx_bytes, "the results did not reuse the kept buffers"

    x_ref = x.double().requires_grad_(True)
    y_ref = reference_conv(x_ref, indices, None, kernel.double(), None)
    (dx_ref,) = torch.autograd.grad((y_ref * dy.double()).sum(), [x_ref])
    # Sums of 128 and up to 256 float32 products: compared to their scale.
    assert_close_to_scale(y.double(), y_ref.detach(), "output")
    assert_close_to_scale(dx.double(), dx_ref, "input gradient")

    del y, dx
    assert rs.empty_cache() == kept
    assert rs.cached_bytes() == 0


@pytest.mark.parametrize(
    "value, kept",
    [("0", False), ("64", True), ("abc", None), ("-1", None)],
)
def test_the_cache_limit_comes_from_the_environment(value, kept):
    script = (
        "import torch\n"
        "from idx_flow_rs import torch as rs\n"
        "i = torch.randint(0, 4096, (4096, 4))\n"
        "o, e = rs.reverse_graph(i, 4096)\n"
        "y = rs.gather_contract(torch.randn(1, 4096, 8), i, o, e, None, torch.randn(4, 8, 512), None)\n"
        "del y\n"
        "print(rs.cached_bytes())\n"
    )
    env = dict(os.environ, IDX_FLOW_RS_CACHE_MB=value)
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if kept is None:
        assert run.returncode != 0
        assert f"IDX_FLOW_RS_CACHE_MB is {value!r}, expected a whole number of MiB" in run.stderr.replace('"', "'")
    else:
        assert run.returncode == 0, run.stderr
        assert (int(run.stdout) > 0) == kept


# ------------------------------------------- against idx_flow where installed


def test_the_same_seed_gives_idx_flows_weights_outputs_and_gradients():
    idx_flow = pytest.importorskip("idx_flow")
    cases = [
        ("SpatialConv", 16, 8, 4, dict(filters=5)),
        ("SpatialConv", 16, 8, 9, dict(filters=7, weight_init="kaiming_normal", bias_init=0.2)),
        ("SpatialTransposeConv", 8, 16, 4, dict(filters=3, weight_init="orthogonal")),
    ]
    for cls_name, ni, no, k, kwargs in cases:
        indices, _, weights = compute_connection_indices(ni, no, k, return_weights=True)
        x = torch.randn(2, 12 * ni * ni, 3)
        dy = torch.randn(2, 12 * no * no, kwargs["filters"])
        results = []
        for cls in (getattr(idx_flow, cls_name), getattr(rs, cls_name)):
            torch.manual_seed(11)
            m = cls(12 * no * no, indices, kernel_weights=weights, **kwargs)
            xg = x.clone().requires_grad_(True)
            y = m(xg)
            (y * dy).sum().backward()
            results.append((m, y.detach(), xg.grad, m.kernel.grad))
        (theirs, *t), (ours, *o) = results
        assert torch.equal(theirs.kernel, ours.kernel), cls_name
        torch.testing.assert_close(o[0], t[0], **TOL)
        torch.testing.assert_close(o[1], t[1], **TOL)
        assert_close_to_scale(o[2], t[2], f"{cls_name} kernel gradient")
        # state dicts load both ways (idx_flow's module after its first forward)
        assert set(theirs.state_dict()) == set(ours.state_dict())
        fresh = getattr(rs, cls_name)(12 * no * no, indices, kernel_weights=weights, **kwargs)
        fresh.load_state_dict(theirs.state_dict())
        theirs.load_state_dict(ours.state_dict())


def test_upsampling_equals_idx_flows_for_every_interpolation():
    idx_flow = pytest.importorskip("idx_flow")
    indices, distances = compute_connection_indices(4, 8, 4)
    x = torch.randn(2, 192, 5)
    for interpolation in ("linear", "idw", "gaussian"):
        theirs = idx_flow.SpatialUpsampling(768, indices, distances, interpolation=interpolation)
        ours = rs.SpatialUpsampling(768, indices, distances, interpolation=interpolation)
        assert torch.equal(theirs.interpolation_weights, ours.interpolation_weights)
        torch.testing.assert_close(ours(x), theirs(x), **TOL)
