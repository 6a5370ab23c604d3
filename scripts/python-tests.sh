#!/usr/bin/env bash
# Builds the Python package `seer` (crates/seer-py) into a virtual environment
# and runs its tests against the `seer` command line.
#
#   bash scripts/python-tests.sh [--wheel] [pytest arguments...]
#
# By default the extension is the one `cargo build --release --workspace`
# makes (target/release/lib_seer.so), staged with the package's Python files
# in target/pystage: after `cargo test --workspace --release` (CI's first step)
# that build is a no-op. A separate `maturin develop` or `cargo build -p ...`
# resolves the dependencies' features for one package instead of the whole
# workspace and so recompiles most of it (8 minutes each on 2 cores).
# `--wheel` builds and installs the real wheel with maturin instead (the path
# `pip install ./crates/seer-py` takes).
#
# Needs: a Rust toolchain, python3 with its venv module (Debian: python3-venv,
# installed here when missing and apt-get is at hand), network access to PyPI
# (first run only), and the shared test data at ../shared/data beside the
# repository (or $SEER_SHARED_DATA). The venv lives in target/pyenv and is
# reused; delete it to start afresh. Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/pyenv
STAGE=target/pystage
PYTHON_REQUIREMENTS=("pytest>=7" "numpy>=1.22" "pyarrow>=15" "pillow>=9")
WHEEL=0
if [ "${1:-}" = "--wheel" ]; then
    WHEEL=1
    shift
    PYTHON_REQUIREMENTS+=("maturin>=1.9.4,<2")
fi

# `step NAME` starts a step and reports how long the one before it took.
source scripts/steps.sh

command -v cargo >/dev/null 2>&1 || { echo "cargo is required (install Rust with rustup)" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "python3 is required" >&2; exit 1; }

export SEER_SHARED_DATA="${SEER_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
if [ ! -d "$SEER_SHARED_DATA/smoke" ]; then
    echo "test data not found at $SEER_SHARED_DATA (set SEER_SHARED_DATA to the folder holding smoke/)" >&2
    exit 1
fi

step "virtual environment ($VENV)"
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        # Debian's python3 ships venv and ensurepip in a separate package.
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "python3 lacks venv/ensurepip: installing Debian's python3-venv"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq python3-venv >/dev/null
        else
            echo "python3 cannot create virtual environments (no venv/ensurepip module):" \
                "install your distribution's python3-venv package (Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}"

# The extension and the command line come from the same sources in one run, so
# the tests compare like with like.
step "build the command line and the extension (cargo build --release --workspace)"
cargo build --release --quiet --workspace --all-targets
if [ "$WHEEL" = 1 ]; then
    step "build and install the wheel (maturin develop --release)"
    VIRTUAL_ENV="$PWD/$VENV" PATH="$PWD/$VENV/bin:$PATH" \
        "$VENV/bin/maturin" develop --release --quiet -m crates/seer-py/Cargo.toml
    export PYTHONPATH=""
else
    step "stage the package ($STAGE)"
    rm -rf "$STAGE"
    mkdir -p "$STAGE"
    cp -r crates/seer-py/python/seer "$STAGE/seer"
    rm -rf "$STAGE/seer/__pycache__" "$STAGE"/seer/_seer*.so
    cp target/release/lib_seer.so "$STAGE/seer/_seer.abi3.so"
    export PYTHONPATH="$PWD/$STAGE"
fi

step "pytest crates/seer-py/tests"
SEER_BIN="$PWD/target/release/seer" "$VENV/bin/python" -m pytest crates/seer-py/tests "$@"
step
echo "== total: ${SECONDS} s"
