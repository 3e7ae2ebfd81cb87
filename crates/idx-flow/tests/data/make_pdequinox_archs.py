"""pdequinox 0.1.2 architectures: parameter counts, receptive fields, and outputs of a few tiny ones.

python make_pdequinox_archs.py OUT_DIR SEED      (the committed files: SEED 7)
Needs: pip install pdequinox==0.1.2 jax safetensors   (JAX 0.10.2, Equinox 0.13.8, CPU, float32)
Writes OUT_DIR/pdequinox_archs.safetensors and OUT_DIR/pdequinox_archs_manifest.json.

manifest["counts"][name] = {class, args, param_count, receptive_field}: pdequinox.count_parameters
  and .receptive_field of pdequinox.arch.{class}(**args) (per axis [left, right]; "inf" for infinite).
manifest["cases"][name] = {class, args, input_shape, output_shape, params}: tiny networks run on ONE
  sample (C, *spatial), stored as in make_pdequinox.py: {name}.input, .output, .output_cotangent (r),
  .grad.input (d sum(output*r)/d input), .param.{path}, .grad.param.{path}
  (path = dotted Equinox pytree path, e.g. blocks.0.conv_1.weight, left_arc_blocks.1.0.norm_2.bias).
GroupNorm weights/biases (constant at init) are moved by N(0, 0.1^2) first; the stored values are the ones used.
"""
import sys, os, json
import numpy as np
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import equinox as eqx
from safetensors.numpy import save_file
import pdequinox as pdeqx
from pdequinox import arch

out, seed = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(seed)
key = jax.random.PRNGKey(seed)


def nextkey():
    global key
    key, sub = jax.random.split(key)
    return sub


def path_name(path):
    parts = []
    for p in path:
        if isinstance(p, jtu.GetAttrKey):
            parts.append(p.name)
        elif isinstance(p, jtu.SequenceKey):
            parts.append(str(p.idx))
        else:
            parts.append(str(p.key))
    return ".".join(parts)


def perturb(model, scale=0.1):
    leaves = jtu.tree_flatten_with_path(eqx.filter(model, eqx.is_inexact_array))[0]
    for path, leaf in leaves:
        a = np.asarray(leaf)
        if np.all(a == a.flat[0]) and (a.size > 1 or a.flat[0] in (0.0, 1.0)):
            new = jnp.asarray(a + rng.standard_normal(a.shape) * scale, dtype=a.dtype)
            model = eqx.tree_at(lambda m, path=path: _get(m, path), model, new)
    return model


def _get(m, path):
    for p in path:
        if isinstance(p, jtu.GetAttrKey):
            m = getattr(m, p.name)
        elif isinstance(p, jtu.SequenceKey):
            m = m[p.idx]
        else:
            m = m[p.key]
    return m


def rf(model):
    return [[("inf" if np.isinf(v) else float(v)) for v in axis] for axis in model.receptive_field]


T, counts, cases = {}, {}, {}


def count(name, cls, args):
    model = getattr(arch, cls)(**args, key=nextkey())
    counts[name] = {"class": cls, "args": args, "param_count": int(pdeqx.count_parameters(model)),
                    "receptive_field": rf(model)}


def record(name, cls, args, grid):
    model = perturb(getattr(arch, cls)(**args, key=nextkey()))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    x = jnp.asarray(rng.standard_normal((args["in_channels"],) + grid), dtype=jnp.float32)

    def fwd(p, xx):
        return eqx.combine(p, static)(xx)

    y = fwd(params, x)
    r = jnp.asarray(rng.standard_normal(y.shape), dtype=jnp.float32)
    gp, gx = jax.grad(lambda p, xx: jnp.sum(fwd(p, xx) * r), argnums=(0, 1))(params, x)
    T[f"{name}.input"] = np.asarray(x)
    T[f"{name}.output"] = np.asarray(y, dtype=np.float32)
    T[f"{name}.output_cotangent"] = np.asarray(r)
    T[f"{name}.grad.input"] = np.asarray(gx)
    names = []
    for (path, leaf), (_, g) in zip(jtu.tree_flatten_with_path(params)[0], jtu.tree_flatten_with_path(gp)[0]):
        pn = path_name(path)
        names.append(pn)
        T[f"{name}.param.{pn}"] = np.asarray(leaf)
        T[f"{name}.grad.param.{pn}"] = np.asarray(g)
    cases[name] = {"class": cls, "args": args, "input_shape": list(x.shape), "output_shape": list(y.shape),
                   "params": names, "param_count": int(pdeqx.count_parameters(model)),
                   "receptive_field": rf(model)}


# ---- parameter counts and receptive fields: defaults in 1-D and 2-D, variants in 1-3 D --------
CI, CO = 2, 3
for D in (1, 2):
    base = dict(num_spatial_dims=D, in_channels=CI, out_channels=CO)
    for cls in ("ConvNet", "ClassicResNet", "ModernResNet", "DilatedResNet", "ClassicUNet", "ModernUNet",
                "ClassicFNO"):
        count(f"{cls}_{D}d_default", cls, base)
for D in (1, 2, 3):
    base = dict(num_spatial_dims=D, in_channels=CI, out_channels=CO)
    count(f"ConvNet_{D}d_depth0", "ConvNet", dict(base, depth=0, kernel_size=5))
    count(f"ConvNet_{D}d_small", "ConvNet", dict(base, hidden_channels=5, depth=3, kernel_size=4, use_bias=False,
                                                  boundary_mode="dirichlet"))
    count(f"ClassicResNet_{D}d_norm", "ClassicResNet", dict(base, hidden_channels=6, num_blocks=3, use_norm=True))
    count(f"ModernResNet_{D}d_nonorm", "ModernResNet", dict(base, hidden_channels=7, num_blocks=2, use_norm=False))
    count(f"DilatedResNet_{D}d_rates", "DilatedResNet", dict(base, hidden_channels=4, num_blocks=3,
                                                             dilation_rates=(1, 3, 1), boundary_mode="neumann"))
    count(f"ClassicUNet_{D}d_small", "ClassicUNet", dict(base, hidden_channels=8, num_levels=2, use_norm=False))
    count(f"ModernUNet_{D}d_multipliers", "ModernUNet", dict(base, hidden_channels=4, num_levels=3, num_blocks=1,
                                                             channel_multipliers=(1, 2, 3)))
    count(f"ClassicFNO_{D}d_small", "ClassicFNO", dict(base, hidden_channels=6, num_modes=3, num_blocks=2))
    count(f"ClassicUNet_{D}d_levels0", "ClassicUNet", dict(base, hidden_channels=5, num_levels=0))
    count(f"ModernUNet_{D}d_levels1", "ModernUNet", dict(base, hidden_channels=3, num_levels=1, num_blocks=3,
                                                         use_norm=False, boundary_mode="dirichlet"))

# ---- tiny networks with outputs and gradients ----------------------------------------------------
record("conv_net_2d_dirichlet", "ConvNet",
       dict(num_spatial_dims=2, in_channels=2, out_channels=3, hidden_channels=4, depth=2,
            boundary_mode="dirichlet"), (6, 8))
record("classic_res_net_1d_neumann", "ClassicResNet",
       dict(num_spatial_dims=1, in_channels=2, out_channels=3, hidden_channels=4, num_blocks=2, use_norm=True,
            boundary_mode="neumann"), (16,))
record("dilated_res_net_1d", "DilatedResNet",
       dict(num_spatial_dims=1, in_channels=2, out_channels=1, hidden_channels=3, num_blocks=1), (24,))
record("classic_unet_2d_dirichlet", "ClassicUNet",
       dict(num_spatial_dims=2, in_channels=2, out_channels=1, hidden_channels=3, num_levels=2,
            boundary_mode="dirichlet"), (8, 12))
record("modern_unet_1d_neumann", "ModernUNet",
       dict(num_spatial_dims=1, in_channels=1, out_channels=2, hidden_channels=2, num_levels=2, num_blocks=2,
            boundary_mode="neumann"), (16,))
record("classic_fno_1d", "ClassicFNO",
       dict(num_spatial_dims=1, in_channels=2, out_channels=1, hidden_channels=4, num_modes=5, num_blocks=2), (16,))

save_file(T, f"{out}/pdequinox_archs.safetensors")
versions = {"pdequinox": "0.1.2", "jax": jax.__version__, "equinox": eqx.__version__, "seed": seed}
with open(f"{out}/pdequinox_archs_manifest.json", "w") as f:
    json.dump({"versions": versions, "counts": counts, "cases": cases}, f, indent=1, sort_keys=True)
print("ok", out, len(counts), "counts,", len(cases), "cases")
