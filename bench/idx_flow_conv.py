"""Times idx_flow 0.2.1's SpatialConv on the same case as `idx-flow bench conv`.

python bench/idx_flow_conv.py GRAPH.npz --batch 8 --channels 32 --filters 64 \
    [--device cpu|cuda] [--dtype f32|bf16] [--runs 10] [--warmup 3] [--input-grad]

GRAPH.npz holds `indices` [N_out, k] and `n_in` (written by `idx-flow bench conv`,
so both sides use the same graph), or is a graph file of `idx-flow indices`
(`nside_in` gives N_in = 12·nside_in²). Prints one line:
`path=idx_flow fwd_ms=.. step_ms=.. peak_mib=..` (medians; the step is forward,
mean-square loss, backward and an SGD update, as on the Rust side; peak memory is
torch.cuda.max_memory_allocated on the GPU and the process's peak RSS growth on the CPU).
Needs: pip install idx-flow==0.2.1 torch
"""
import argparse, resource, statistics, sys, time

try:
    import numpy as np
    import torch
    from idx_flow import SpatialConv
except Exception as e:  # noqa: BLE001
    print(f"idx_flow unavailable: {e}", file=sys.stderr)
    sys.exit(3)

p = argparse.ArgumentParser()
p.add_argument("graph")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--channels", type=int, default=32)
p.add_argument("--filters", type=int, default=64)
p.add_argument("--device", default="cpu")
p.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
p.add_argument("--runs", type=int, default=10)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--input-grad", action="store_true")
a = p.parse_args()

if a.threads > 0:
    torch.set_num_threads(a.threads)
g = np.load(a.graph)
indices = g["indices"].astype(np.int64)
n_in = int(g["n_in"]) if "n_in" in g else 12 * int(g["nside_in"]) ** 2
n_out = indices.shape[0]
dev = torch.device("cuda" if a.device in ("cuda", "wgpu") else "cpu")
dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[a.dtype]

torch.manual_seed(0)
layer = SpatialConv(n_out, indices, filters=a.filters).to(dev)
x = torch.randn(a.batch, n_in, a.channels, device=dev)
with torch.no_grad():
    layer(x[:1])  # lazy parameter creation (in f32)
layer = layer.to(dtype)
x = x.to(dtype)
x.requires_grad_(a.input_grad)
opt = torch.optim.SGD(layer.parameters(), lr=1e-3)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def forward():
    with torch.no_grad():
        layer(x)
    sync()


def step():
    opt.zero_grad(set_to_none=True)
    y = layer(x)
    loss = (y.float() ** 2).mean()
    loss.backward()
    opt.step()
    sync()


def median_ms(f):
    for _ in range(a.warmup):
        f()
    times = []
    for _ in range(a.runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
fwd = median_ms(forward)
stp = median_ms(step)
if dev.type == "cuda":
    peak = torch.cuda.max_memory_allocated() / 2**20
else:
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
print(f"path=idx_flow fwd_ms={fwd:.2f} step_ms={stp:.2f} peak_mib={peak:.0f}", flush=True)
