#!/usr/bin/env bash
# The Ray Data and Spark tests of the Python package (crates/seer-py/tests/
# test_ray.py and test_spark.py): installs ray[data], pyspark, pylance and
# pandas into the package's virtual environment (target/pyenv, made by
# scripts/python-tests.sh, which runs first when the venv lacks `seer`), then
# runs the tests, which compare both pipelines with `seer embed --shards`.
#
#   bash scripts/scale-tests.sh [pytest arguments...]
#
#   SEER_SCALE_TESTS=0      skip everything (exit 0, saying so)
#   SEER_SCALE_TESTS=ray    only the Ray tests
#   SEER_SCALE_TESTS=spark  only the Spark tests
#
# Needs what scripts/python-tests.sh needs, plus Java 17+ for Spark (`java` on
# PATH or JAVA_HOME; without it the Spark tests are skipped with a message) and
# PyPI access on the first run (about 400 MB of wheels; pyspark alone ~320 MB).
# Prints how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

WHICH="${SEER_SCALE_TESTS:-1}"
case "$WHICH" in
    0 | no | false | off)
        echo "SEER_SCALE_TESTS=$WHICH: skipping the Ray and Spark tests"
        exit 0
        ;;
    1 | yes | true | on | all) TESTS=(crates/seer-py/tests/test_ray.py crates/seer-py/tests/test_spark.py) ;;
    ray) TESTS=(crates/seer-py/tests/test_ray.py) ;;
    spark) TESTS=(crates/seer-py/tests/test_spark.py) ;;
    *)
        echo "SEER_SCALE_TESTS must be 0, 1, ray or spark (got '$WHICH')" >&2
        exit 2
        ;;
esac

VENV=target/pyenv
# Versions these tests were last run with: ray 2.60, pyspark 4.3, pylance 14, pandas 2.3,
# embedding-reader 1.8 (autofaiss's reader, for the layout test).
# pandas below 3: PySpark 4.3 warns that it does not fully support pandas 3 yet.
SCALE_REQUIREMENTS=("ray[data]>=2.40,<3" "pyspark>=3.5,<5" "pylance>=0.20" "pandas>=2,<3" "embedding-reader>=1.7")

source scripts/steps.sh

export SEER_SHARED_DATA="${SEER_SHARED_DATA:-$(cd .. && pwd)/shared/data}"

# The package as scripts/python-tests.sh stages it (the workspace build's
# extension beside the Python sources), ahead of any seer installed in the venv
# (`python-tests.sh --wheel` installs one there: remove target/pystage to test it).
STAGE=target/pystage
if [ -d "$STAGE/seer" ]; then
    export PYTHONPATH="$PWD/$STAGE${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import seer; seer.Model' >/dev/null 2>&1; }; then
    step "the package is not built yet: scripts/python-tests.sh (builds it and the command line, runs its tests)"
    bash scripts/python-tests.sh -q
    export PYTHONPATH="$PWD/$STAGE${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ ! -x target/release/seer ]; then
    step "build the command line (cargo build --release -p seer-cli)"
    cargo build --release --quiet -p seer-cli
fi

step "install ray[data], pyspark, pylance, pandas into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${SCALE_REQUIREMENTS[@]}"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
print("   ", ", ".join(f"{p} {m.version(p)}" for p in ("ray", "pyspark", "pylance", "pandas", "pyarrow", "embedding-reader")))
EOF

if [[ " ${TESTS[*]} " == *test_spark.py* ]] && ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
    echo "no Java (java on PATH or JAVA_HOME): the Spark tests will be skipped; install a JDK 17+ to run them"
fi

step "pytest ${TESTS[*]}"
# Ray starts its own processes; keep them off the dashboard and usage reporting.
export RAY_USAGE_STATS_ENABLED=0
SEER_BIN="$PWD/target/release/seer" "$VENV/bin/python" -m pytest "${TESTS[@]}" -p no:cacheprovider "$@"
step
echo "== total: ${SECONDS} s"
