#!/usr/bin/env bash
# Loads a model logged by the project in a FRESH virtual environment built only from the
# model's logged requirements (no repository on the path, pickle deserialization disabled)
# and checks it gives the same scores as the project's own scoring. Takes a few minutes
# (a virtual environment is built), so it is a script, not a test.
#
#   bash .ci/check_model_fresh_env.sh            # output is recorded in docs/fresh-env-check.txt
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vae-anomaly-fresh.XXXXXX)
export MLFLOW_TRACKING_URI="sqlite:///$work/mlruns/mlflow.db"
export VAE_ANOMALY_SCORING__OUTPUT_ROOT="$work/scored"
export VAE_ANOMALY_TRAINING__MAX_EPOCHS=20
export PREFECT_SERVER_ANALYTICS_ENABLED=false
cd "$repo"
make install >/dev/null
echo "== train and score with the project (store: $MLFLOW_TRACKING_URI)"
.venv/bin/vae-anomaly train data/sample/train.csv --no-progress
.venv/bin/vae-anomaly score data/sample/batch.csv --run-date fresh-env-check --top 0
scored="$work/scored/fresh-env-check/batch/scored.parquet"

echo "== the model's logged requirements"
requirements=$(.venv/bin/python -c "import mlflow; print(mlflow.pyfunc.get_model_dependencies('models:/vae-anomaly@champion'))")
cat "$requirements"

echo "== fresh virtual environment from those requirements only"
python3 -m venv "$work/fresh"
"$work/fresh/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"

echo "== load by alias in the fresh environment, outside the repository, pickle disabled"
cd "$work"
env -u PYTHONPATH MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false "$work/fresh/bin/python" - "$repo/data/sample/batch.csv" "$scored" <<'PY'
import importlib.util
import sys

import mlflow
import numpy as np
import pandas as pd

batch_path, scored_path = sys.argv[1], sys.argv[2]
assert importlib.util.find_spec("pipeline") is None, "the project must not be importable here"
model = mlflow.pyfunc.load_model("models:/vae-anomaly@champion")
batch = pd.read_csv(batch_path).drop(columns=["label", "anomaly_kind", "anomaly_column"])
batch = batch.astype({c: "float64" for c in batch.select_dtypes("integer").columns})
predicted = model.predict(batch)
expected = pd.read_parquet(scored_path)
diff = np.abs(predicted["anomaly_score"].to_numpy() - expected["anomaly_score"].to_numpy()).max()
same_flags = (predicted["is_anomaly"].to_numpy() == expected["is_anomaly"].to_numpy()).all()
print(f"rows {len(predicted)}, max |score difference| {diff:.3g}, same flags: {same_flags}")
print(f"mlflow {mlflow.__version__}, pickle deserialization allowed: "
      f"{__import__('os').environ['MLFLOW_ALLOW_PICKLE_DESERIALIZATION']}")
assert diff < 1e-6 and same_flags
print("OK: the fresh environment reproduces the project's scores")
PY
rm -rf "$work"
