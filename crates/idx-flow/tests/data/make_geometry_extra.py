"""RING geometry for nsides that are not powers of two, named as make_fixtures.py names them.

python make_geometry_extra.py OUT_DIR SEED
Needs: pip install numpy healpy safetensors   (healpy 1.20.1 made the committed file)
healpy's ring scheme takes any nside; NESTED does not, so only `.ring.*` and `.query.ring_pix` exist here.
"""
import sys, os
import numpy as np, healpy as hp
from safetensors.numpy import save_file

out, seed = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(seed)
geo = {}
for ns in [3, 5, 6, 12]:
    p = np.arange(hp.nside2npix(ns))
    th, ph = hp.pix2ang(ns, p)
    geo[f"nside{ns}.ring.theta"] = th; geo[f"nside{ns}.ring.phi"] = ph
    geo[f"nside{ns}.ring.neighbours"] = hp.get_all_neighbours(ns, p).T.astype(np.int64).copy()
    t = np.arccos(rng.uniform(-1, 1, 500)); f = rng.uniform(0, 2 * np.pi, 500)
    geo[f"nside{ns}.query.theta"] = t; geo[f"nside{ns}.query.phi"] = f
    geo[f"nside{ns}.query.ring_pix"] = hp.ang2pix(ns, t, f).astype(np.int64)
save_file(geo, f"{out}/healpix_geometry_extra.safetensors")
print("ok", out, "healpy", hp.__version__)
