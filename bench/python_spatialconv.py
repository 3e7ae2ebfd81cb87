"""idx_flow 0.2.1 against idx_flow_rs.torch from PyTorch: SpatialConv forward
and training step, side by side in one run (medians of interleaved repeats,
the call overhead included: the module is called as a user calls it).

    pip install torch idx-flow==0.2.1 healpy scikit-learn
    pip install target/wheels/idx_flow_rs-*.whl
    python bench/python_spatialconv.py [--repeats 10] [--threads 2]

The step is forward, mean-square loss against a fixed target, and backward
with the input gradient (as inside a network), with the parameters'
gradients set to None before each. Both modules start from the same seed,
so they hold the same weights; the script checks that outputs and
gradients agree before it times anything.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import idx_flow
import idx_flow_rs
from idx_flow_rs import torch as rs

CASES = [
    # nside_in, nside_out, k, batch, channels, filters
    (64, 32, 4, 8, 32, 64),
    (256, 128, 9, 4, 64, 64),
]


def build(cls, ni, no, k, c, f):
    indices, _ = idx_flow_rs.compute_connection_indices(ni, no, k)
    torch.manual_seed(0)
    m = cls(12 * no * no, indices, filters=f)
    with torch.no_grad():
        m(torch.zeros(1, 12 * ni * ni, c))  # idx_flow creates its parameters here
    return m


def forward(m, x):
    with torch.no_grad():
        return m(x)


def step(m, x, target):
    for p in m.parameters():
        p.grad = None
    x = x.detach().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(m(x), target)
    loss.backward()
    return x.grad


def timed(f, *args):
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads; idx_flow_rs {idx_flow_rs.__version__}"
        " (rayon: RAYON_NUM_THREADS or all cores)"
    )
    print(
        f"{'case':<34} {'idx_flow ms':>11} {'idx_flow_rs ms':>15} {'speed-up':>9}"
    )
    for ni, no, k, b, c, f in CASES:
        theirs = build(idx_flow.SpatialConv, ni, no, k, c, f)
        ours = build(rs.SpatialConv, ni, no, k, c, f)
        assert torch.equal(theirs.kernel, ours.kernel)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(b, 12 * ni * ni, c, generator=gen)
        target = torch.randn(b, 12 * no * no, f, generator=gen)
        torch.testing.assert_close(forward(ours, x), forward(theirs, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step(ours, x, target), step(theirs, x, target), rtol=1e-5, atol=1e-5)
        # The kernel gradient sums B·N_out products: compared to its scale.
        diff = (ours.kernel.grad - theirs.kernel.grad).abs().max()
        assert diff <= 1e-5 * theirs.kernel.grad.abs().max(), f"kernel gradients differ by {diff}"
        name = f"{ni}->{no} k={k} B={b} C={c} F={f}"
        for label, run, extra in (("forward", forward, ()), ("step", step, (target,))):
            a, o = [], []
            for _ in range(args.repeats):
                a.append(timed(run, theirs, x, *extra))
                o.append(timed(run, ours, x, *extra))
            ma, mo = statistics.median(a) * 1e3, statistics.median(o) * 1e3
            print(f"{name + ' ' + label:<34} {ma:>11.1f} {mo:>15.1f} {ma / mo:>8.2f}x")


if __name__ == "__main__":
    main()
