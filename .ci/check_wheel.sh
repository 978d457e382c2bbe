#!/usr/bin/env bash
# The package works outside a checkout: build the wheel, install it into a FRESH virtual
# environment outside the repository (dependencies pinned by requirements.lock), then in empty
# directories train and score (a copy of the sample files; the files `vae-anomaly demo`
# writes) and check that every output lands under that directory and nothing under
# site-packages. A few minutes (most of it installing the dependencies), so a script, not a test.
#
#   bash .ci/check_wheel.sh                 # CI runs it after `make test` (.ci/run)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vae-anomaly-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}

echo "== build the wheel (from a copy: setuptools writes build/ next to the sources)"
mkdir "$work/src"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/vae" "$repo/pipeline" "$repo/flows" "$work/src/"
"$python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/vae_anomaly-*.whl)
echo "$(basename "$wheel")"

echo "== install it into a fresh virtual environment (versions from requirements.lock)"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -c "$repo/requirements.lock" "$wheel"
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cli="$work/venv/bin/vae-anomaly"
marker="$work/installed.marker"
touch "$marker"
sleep 1

# nothing from the checkout or the caller's settings: a user's shell in an empty directory
run() {
    env -u MLFLOW_TRACKING_URI -u VAE_ANOMALY_HOME -u PYTHONPATH -u VIRTUAL_ENV \
        PREFECT_HOME="$work/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false \
        VAE_ANOMALY_TRAINING__MAX_EPOCHS=5 "$cli" "$@"
}

echo "== in an empty directory: train and score a copy of the sample files"
mkdir "$work/copy" && cd "$work/copy"
cp "$repo/data/sample/train.csv" "$repo/data/sample/batch.csv" .
run --version
run train train.csv --no-progress
run score batch.csv --run-date 2026-01-01 --top 3
test -f "$work/copy/mlruns/mlflow.db"
test -f "$work/copy/data/scored/2026-01-01/batch/manifest.json"
test -f "$work/copy/data/scored/2026-01-01/batch/scored.parquet"
set +e
run score typo.csv
code=$?
set -e
test "$code" -eq 2 || { echo "FAILED: a mistyped path exited with $code, not 2"; exit 1; }

echo "== in another empty directory: vae-anomaly demo, then train and score with no argument"
mkdir "$work/demo" && cd "$work/demo"
run demo
run train --no-progress
run score --run-date 2026-01-02 --top 0
test -f "$work/demo/data/sample/train.csv"
test -f "$work/demo/mlruns/mlflow.db"
test -f "$work/demo/data/scored/2026-01-02/batch/manifest.json"

echo "== nothing was written under site-packages"
written=$(find "$site" -newer "$marker" -type f ! -name '*.pyc' | head -20)
for name in mlruns data mlflow.db; do
    if [ -e "$site/$name" ]; then written="$written $site/$name"; fi
done
if [ -n "$written" ]; then
    echo "FAILED: files written under $site:"
    echo "$written"
    exit 1
fi
echo "OK: the installed wheel keeps its state in the working directory"
