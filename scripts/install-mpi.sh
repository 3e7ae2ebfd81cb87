#!/usr/bin/env bash
# Installs what the `mpi` feature builds and runs against, where it is
# missing: OpenMPI (the library and headers, mpicc, mpirun) and libclang
# (rsmpi generates its bindings with bindgen). Debian and Ubuntu, as root or
# through sudo; does nothing when all three are present.
#
#     scripts/install-mpi.sh
#     cargo build --release -p idx-flow-cli --features mpi
#     mpirun -n 2 target/release/idx-flow train ...
set -euo pipefail
need=()
command -v mpicc >/dev/null || need+=(libopenmpi-dev)
command -v mpirun >/dev/null || need+=(openmpi-bin)
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
    need+=(libclang-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then
        echo "install-mpi: no apt-get here; install ${need[*]} (OpenMPI and libclang) with your package manager" >&2
        exit 1
    fi
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "install-mpi: $(mpirun --version 2>/dev/null | head -1), $(ls /usr/lib/llvm-*/lib/libclang.so* 2>/dev/null | head -1)"
