"""idx_flow 0.2.1 against idx_flow_rs: building connection graphs from Python,
side by side in one run (medians of interleaved repeats).

    pip install --no-deps idx-flow==0.2.1      # idx_flow.utils needs healpy and
    pip install healpy scikit-learn numpy      # scikit-learn, not torch
    pip install target/wheels/idx_flow_rs-*.whl
    python bench/python_graphs.py [--repeats 5]

idx_flow's package imports torch on import; its graph functions do not, so
they are loaded from the installed ``idx_flow/utils.py`` directly.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import numpy as np

import idx_flow_rs


def idx_flow_utils():
    spec = importlib.util.find_spec("idx_flow")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("idx_flow is not installed: pip install --no-deps idx-flow==0.2.1")
    path = f"{list(spec.submodule_search_locations)[0]}/utils.py"
    utils_spec = importlib.util.spec_from_file_location("idx_flow_utils", path)
    module = importlib.util.module_from_spec(utils_spec)
    utils_spec.loader.exec_module(module)
    return module


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    utils = idx_flow_utils()
    def own_order(ni, no, k):
        # Our own order of tied neighbours (by input index), not idx_flow's.
        return idx_flow_rs.compute_connection_indices(
            ni, no, k, return_weights=True, exact_order=False
        )

    print(
        f"{'case':<16} {'idx_flow s':>11} {'idx_flow_rs s':>14} {'speed-up':>9}"
        f" {'exact_order=False s':>20} {'speed-up':>9}  rows equal"
    )
    for ni, no, k in [(256, 128, 9), (512, 256, 9)]:
        theirs, ours, own = [], [], []
        for _ in range(args.repeats):
            t, ref = timed(lambda: utils.compute_connection_indices(ni, no, k, return_weights=True))
            theirs.append(t)
            t, got = timed(lambda: idx_flow_rs.compute_connection_indices(ni, no, k, return_weights=True))
            ours.append(t)
            t, _ = timed(lambda: own_order(ni, no, k))
            own.append(t)
        assert np.allclose(ref[1], got[1], rtol=0, atol=1e-9)
        equal = np.mean(np.all(ref[0] == got[0], axis=1))
        a, b, c = (statistics.median(x) for x in (theirs, ours, own))
        print(
            f"{ni}->{no} k={k:<6} {a:>11.3f} {b:>14.4f} {a / b:>8.1f}x"
            f" {c:>20.4f} {a / c:>8.1f}x  {equal:.2%}"
        )


if __name__ == "__main__":
    main()
