#!/usr/bin/env bash
# Step time and exchange time per step of `idx-flow train` on this machine:
# one process with 2 workers, against 2 MPI ranks of 1 worker and 1 compute
# thread each (the same computation, see docs/distributed.md), for the main
# job's default autoencoder and one about 10x larger (widths 56,112).
#
#     cargo build --release -p idx-flow-cli --features mpi
#     bench/mpi.sh            # STEPS=200 by default
#
# Prints one row per run from its metrics.json: parameters, training seconds,
# milliseconds per step, and the milliseconds per step rank 0 spent in
# exchanges (waiting for the other rank included).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/release/idx-flow}
steps=${STEPS:-200}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-8s %-26s %10s %9s %9s %12s %7s\n' model run parameters train_s ms/step exchange_ms share
for model in default large; do
    extra=()
    [ "$model" = large ] && extra=(--widths 56,112)
    common=(train --steps "$steps" --batch 4 --checkpoint-every 0 --seed 1 "${extra[@]}")
    "$bin" "${common[@]}" --workers 2 --out "$out/$model-1" >/dev/null
    mpirun --allow-run-as-root --oversubscribe -n 2 -x RAYON_NUM_THREADS=1 \
        "$bin" "${common[@]}" --out "$out/$model-2" >/dev/null
    for run in 1 2; do
        python3 - "$out/$model-$run/metrics.json" "$model" "$run" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
steps = m["steps"]
what = "1 process, 2 workers" if sys.argv[3] == "1" else "2 ranks x 1 worker"
ms = 1e3 * m["train_seconds"] / steps
ex = 1e3 * m.get("exchange_seconds", 0.0) / steps
print(f"{sys.argv[2]:<8} {what:<26} {m['parameters']:>10,} {m['train_seconds']:>9.1f} "
      f"{ms:>9.1f} {ex:>12.2f} {100 * ex / ms:>6.1f}%")
PY
    done
done
