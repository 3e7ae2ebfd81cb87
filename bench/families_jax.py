"""Times pdequinox and ginjax (JAX, jit, CPU) on the cases of `bench/families`.

python bench/families_jax.py --case fno|classic_unet|modern_unet|conv_contract \
    [--runs 15] [--warmup 3]

Prints one JSON line: {"case", "fwd_ms": [...], "step_ms": [...], "compile_ms": {"fwd", "step"},
"params"}. The forward is the jitted model vmapped over the batch; the step is the
jitted value and gradient (with respect to the parameters) of the mean-square error
against a random target. Compile time is the first call's time less a warm call's,
reported apart. Threads: 2 (XLA's CPU client), as on the Rust side.
Needs: pip install "jax[cpu]" pdequinox==0.1.2 ginjax==0.1.8
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

try:
    import jax
    import jax.numpy as jnp
    import jax.tree_util as jtu
    import equinox as eqx
except Exception as e:  # noqa: BLE001
    print(f"jax unavailable: {e}", file=sys.stderr)
    sys.exit(3)

p = argparse.ArgumentParser()
p.add_argument("--case", required=True)
p.add_argument("--runs", type=int, default=15)
p.add_argument("--warmup", type=int, default=3)
a = p.parse_args()

key = jax.random.PRNGKey(0)
k_model, k_x, k_y = jax.random.split(key, 3)
BATCH = 8


def pde_case(name):
    import pdequinox as pdeqx

    arch = {"fno": pdeqx.arch.ClassicFNO, "classic_unet": pdeqx.arch.ClassicUNet,
            "modern_unet": pdeqx.arch.ModernUNet}[name]
    model = arch(2, 1, 1, key=k_model)
    x = jax.random.normal(k_x, (BATCH, 1, 128, 128))
    y = jax.random.normal(k_y, (BATCH, 1, 128, 128))

    def apply(m, x):
        return jax.vmap(m)(x)

    def loss(m, x, y):
        return jnp.mean((apply(m, x) - y) ** 2)

    return model, (x,), (x, y), apply, loss, eqx.is_inexact_array


def conv_contract_case():
    import ginjax.geometric as geom
    import ginjax.layers as ml

    d, m_side, grid, chans = 2, 3, (64, 64), 8
    ops = geom.make_all_operators(d)
    filters = geom.get_invariant_filters([m_side], [0, 1, 2], [0, 1], d, ops)
    keys = ((((), 0), chans), (((False,), 0), chans))
    model = ml.ConvContract(keys, keys, filters, use_bias="auto", key=k_model)
    kx = jax.random.split(k_x, 2)
    ky = jax.random.split(k_y, 2)
    x = {((), 0): jax.random.normal(kx[0], (BATCH, chans) + grid),
         ((False,), 0): jax.random.normal(kx[1], (BATCH, chans) + grid + (d,))}
    y = {((), 0): jax.random.normal(ky[0], (BATCH, chans) + grid),
         ((False,), 0): jax.random.normal(ky[1], (BATCH, chans) + grid + (d,))}

    def apply(m, x):
        return jax.vmap(lambda xd: dict(m(geom.MultiImage(xd, d, True)).items()))(x)

    def loss(m, x, y):
        out = apply(m, x)
        total = sum(v.size for v in out.values())
        return sum(jnp.sum((out[k] - y[k]) ** 2) for k in out) / total

    # The invariant filters are a fixed basis, not parameters.
    def trainable(leaf):
        return eqx.is_inexact_array(leaf)

    spec = jtu.tree_map(trainable, model)
    spec = eqx.tree_at(lambda mm: mm.invariant_filters, spec,
                       replace=jtu.tree_map(lambda _: False, model.invariant_filters))
    return model, (x,), (x, y), apply, loss, spec


if a.case == "conv_contract":
    model, fwd_args, step_args, apply, loss, spec = conv_contract_case()
else:
    model, fwd_args, step_args, apply, loss, spec = pde_case(a.case)

# A filter function (the pde cases) or a ready boolean tree (a Module, which
# is callable too).
if callable(spec) and not isinstance(spec, eqx.Module):
    spec = jtu.tree_map(spec, model)
params, static = eqx.partition(model, spec)
n_params = sum(leaf.size for leaf in jtu.tree_leaves(params))


@jax.jit
def forward(params, *args):
    return apply(eqx.combine(params, static), *args)


@jax.jit
def step(params, *args):
    return jax.value_and_grad(lambda pp: loss(eqx.combine(pp, static), *args))(params)


def timed(f, args):
    t = time.perf_counter()
    jax.block_until_ready(f(params, *args))
    return (time.perf_counter() - t) * 1e3


result = {"case": a.case, "params": int(n_params), "compile_ms": {}}
for name, f, args in (("fwd", forward, fwd_args), ("step", step, step_args)):
    first = timed(f, args)
    for _ in range(a.warmup):
        timed(f, args)
    times = [timed(f, args) for _ in range(a.runs)]
    result["compile_ms"][name] = max(first - sorted(times)[len(times) // 2], 0.0)
    result[f"{name}_ms"] = times
print(json.dumps(result))
