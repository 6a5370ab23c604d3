# Sourced by the test scripts: `step "NAME"` prints "== NAME", and the previous
# step's name with its seconds; `step` alone closes the last one.
step_name=""
step_start=$SECONDS
step() {
    if [ -n "$step_name" ]; then
        echo "== ${step_name}: $((SECONDS - step_start)) s"
    fi
    step_name=${1:-}
    step_start=$SECONDS
    if [ -n "$step_name" ]; then
        echo "== $step_name"
    fi
}
