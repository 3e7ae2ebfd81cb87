"""Times idx_flow 0.2.1's compute_connection_indices for the cases given on the command line.

python bench/idx_flow_indices.py 256:128:9 512:256:9
Prints one line per case: `idx_flow nside_in=.. nside_out=.. k=.. seconds=..` (best of `--repeat`, default 1).
Needs: pip install idx-flow==0.2.1 healpy scikit-learn torch
"""
import sys, time

try:
    from idx_flow.utils import compute_connection_indices
except ImportError:
    # idx_flow's package __init__ imports torch, which compute_connection_indices
    # does not need: load its utils module (healpy + scikit-learn) directly.
    try:
        import importlib.util, os
        spec = importlib.util.find_spec("idx_flow")
        path = os.path.join(spec.submodule_search_locations[0], "utils.py")
        mod_spec = importlib.util.spec_from_file_location("idx_flow_utils", path)
        utils = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(utils)
        if not utils.HEALPY_AVAILABLE:
            raise ImportError("healpy and scikit-learn are required")
        compute_connection_indices = utils.compute_connection_indices
    except Exception as e:
        print(f"idx_flow unavailable: {e}", file=sys.stderr)
        sys.exit(3)

repeat = 1
args = [a for a in sys.argv[1:]]
if "--repeat" in args:
    i = args.index("--repeat"); repeat = int(args[i + 1]); del args[i:i + 2]
for case in args:
    ni, no, k = (int(x) for x in case.split(":"))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter(); compute_connection_indices(ni, no, k); best = min(best, time.perf_counter() - t)
    print(f"idx_flow nside_in={ni} nside_out={no} k={k} seconds={best:.3f}", flush=True)
