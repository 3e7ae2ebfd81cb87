"""healpy's map2alm / alm2map timed for bench `sht` of idx-flow-healpix.

python healpy_sht.py NSIDE LMAX OP RUNS     (OP: map2alm0, map2alm3, alm2map,
                                            map2alm_spin, alm2map_spin: spin 2)

Threads: healpy's transforms (libsharp inside healpix_cxx) follow
OMP_NUM_THREADS, which the caller sets. Prints one line
`seconds=MEDIAN extra_mib=PEAK_RSS_GROWTH healpy=VERSION`: the median wall
time over RUNS after that first call, and how far the process's peak resident
memory rose above its size before the first transform (Linux: VmHWM reset
through /proc/self/clear_refs).
"""
import sys, time, statistics
import numpy as np, healpy as hp

nside, lmax, op, runs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rng = np.random.default_rng(1)
npix = hp.nside2npix(nside)
m = rng.standard_normal(npix)
alm = hp.map2alm(m, lmax=lmax, iter=0)
u = rng.standard_normal(npix)


def rss_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])


def run():
    if op == "map2alm0":
        hp.map2alm(m, lmax=lmax, iter=0)
    elif op == "map2alm3":
        hp.map2alm(m, lmax=lmax, iter=3)
    elif op == "alm2map":
        hp.alm2map(alm, nside, lmax=lmax)
    elif op == "map2alm_spin":
        hp.map2alm_spin([m, u], 2, lmax=lmax)
    elif op == "alm2map_spin":
        hp.alm2map_spin([alm, alm], nside, 2, lmax)
    else:
        raise SystemExit(f"unknown op {op}")


# Memory: the first call in a fresh process, above what the inputs hold.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = rss_kib("VmRSS:")
run()
extra = (rss_kib("VmHWM:") - before) / 1024
times = []
for _ in range(runs):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
print(f"seconds={statistics.median(times)} extra_mib={extra:.1f} healpy={hp.__version__}")
