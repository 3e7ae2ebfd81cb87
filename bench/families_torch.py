"""Times spectrans 0.1.0 (PyTorch, CPU) on the spectral cases of `bench/families`.

python bench/families_torch.py --case fourier_mixing|fnet_block|afno [--runs 15] [--warmup 3]

Prints one JSON line: {"case", "fwd_ms": [...], "step_ms": [...], "params"}. The forward
runs under torch.no_grad(); the step is forward, mean-square error against a random
target and backward to every parameter (to the input for a layer without any). 2 threads, as on the Rust side.
Needs: pip install torch numpy pydantic typing_extensions einops, then
pip install --no-deps --ignore-requires-python spectrans==0.1.0
"""
import argparse
import json
import sys
import time
from pathlib import Path

# spectrans 0.1.0 needs Python >= 3.12 to import; the fixtures' hook lets it on 3.11.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fixtures"))
import spectrans_compat  # noqa: E402

spectrans_compat.install()

try:
    import torch
    from spectrans.blocks.spectral import FNetBlock
    from spectrans.layers.mixing.afno import AFNOMixing
    from spectrans.layers.mixing.fourier import FourierMixing
except Exception as e:  # noqa: BLE001
    print(f"spectrans unavailable: {e}", file=sys.stderr)
    sys.exit(3)

p = argparse.ArgumentParser()
p.add_argument("--case", required=True, choices=["fourier_mixing", "fnet_block", "afno"])
p.add_argument("--runs", type=int, default=15)
p.add_argument("--warmup", type=int, default=3)
a = p.parse_args()

torch.set_num_threads(2)
torch.manual_seed(0)
B, N, H = 8, 1024, 256
model = {
    "fourier_mixing": lambda: FourierMixing(hidden_dim=H),
    "fnet_block": lambda: FNetBlock(hidden_dim=H),
    "afno": lambda: AFNOMixing(hidden_dim=H, max_sequence_length=N),
}[a.case]().eval()
x = torch.randn(B, N, H)
y = torch.randn(B, N, H)
n_params = sum(p.numel() for p in model.parameters())
# A layer without parameters is stepped to its input instead.
x_step = x.clone().requires_grad_(n_params == 0)


def forward():
    with torch.no_grad():
        model(x)


def step():
    model.zero_grad(set_to_none=True)
    x_step.grad = None
    loss = torch.mean((model(x_step) - y) ** 2)
    loss.backward()


def timed(f):
    t = time.perf_counter()
    f()
    return (time.perf_counter() - t) * 1e3


result = {"case": a.case, "params": n_params}
for name, f in (("fwd", forward), ("step", step)):
    for _ in range(a.warmup):
        f()
    result[f"{name}_ms"] = [timed(f) for _ in range(a.runs)]
print(json.dumps(result))
