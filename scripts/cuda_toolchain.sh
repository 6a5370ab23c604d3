#!/usr/bin/env bash
# A CUDA 13.0 build toolchain for `--features cuda` from PyPI wheels, for machines
# without NVIDIA's toolkit (no GPU is needed to build):
#
#   scripts/cuda_toolchain.sh DIR PYTHON
#   eval "$(scripts/cuda_toolchain.sh DIR PYTHON)"   # then: cargo build --release --features cuda -p seer-cli
#
# PYTHON has PyTorch with its CUDA 13 `nvidia-*` wheels (the reference venv):
# cuBLAS and NVRTC are linked from there. DIR receives nvcc, its headers and
# libdevice, the CUDA runtime and cuRAND (CUDA 13.0 wheels: PTX for CUDA 13.0
# loads on drivers from 580 on; a newer nvcc writes PTX those drivers refuse),
# and a stand-in libcuda.so with the driver API's symbols for the linker only:
# at run time the driver's own libcuda.so.1 is loaded. Prints the variables the
# build needs. Built this way on 2026-12-04, the binaries ran on an H200.
set -euo pipefail
dir=$(mkdir -p "${1:?usage: $0 DIR PYTHON}" && realpath "$1")
python=${2:?usage: $0 DIR PYTHON}
root=$dir/x/nvidia/cu13
if [[ ! -x $root/bin/nvcc ]]; then
    "$python" -m pip download -q --no-deps -d "$dir/whl" 'nvidia-cuda-nvcc==13.0.*' \
        'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-crt==13.0.*' 'nvidia-nvvm==13.0.*' 'nvidia-curand>=10.4,<10.5' >&2
    for w in "$dir"/whl/*.whl; do "$python" -m zipfile -e "$w" "$dir/x"; done
    chmod +x "$root"/bin/* "$root"/nvvm/bin/*
fi
torch_cuda=$("$python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
cp -rn "$torch_cuda"/include/. "$root/include/"
mkdir -p "$root/lib64"
for lib in cublas cublasLt nvrtc; do ln -sf "$torch_cuda/lib/lib$lib.so.13" "$root/lib64/lib$lib.so"; done
ln -sf "$root/lib/libcurand.so.10" "$root/lib64/libcurand.so"
ln -sf "$root/lib/libcudart.so.13" "$root/lib64/libcudart.so"
# The driver API's names, from the cudarc release the lock file pins.
(cd "$(dirname "$0")/.." && cargo fetch -q)
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-"$(grep -A1 '^name = "cudarc"' "$(dirname "$0")/../Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')" | head -1)
grep -ohE 'fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" | sed 's/fn //; s/(//' | sort -u |
    awk '{ print "void " $1 "(void) {}" }' > "$dir/libcuda_stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib64/libcuda.so" "$dir/libcuda_stub.c"
cat <<VARS
export CUDA_ROOT=$root CUDA_PATH=$root CUDA_HOME=$root CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}
export PATH=$root/bin:\$PATH LIBRARY_PATH=$root/lib64
VARS
