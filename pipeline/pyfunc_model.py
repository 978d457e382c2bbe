"""The MLflow pyfunc model, defined in code (MLflow "models from code").

MLflow logs this file by path and runs it at load time; the detector's files (torch state
dict, JSON preprocessing and metadata, checksums) come in as artifacts and are verified in
``load_context``. No pickled Python object is involved, so loading works with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.

``predict`` returns one row per input row, in input order: the id columns, ``anomaly_score``,
``recon_error``, ``kl``, ``score_percentile``, ``is_anomaly``, ``reasons``, ``model_name``,
``model_version``, ``threshold`` and ``rejected_reason`` (empty for scored rows; for a row that
cannot be scored it says why, and its scores are NaN). Params: ``threshold`` (override),
``mc_samples`` (Monte Carlo scoring), ``model_version`` (written into the output).
"""

import mlflow
import pandas as pd


class VAEAnomalyModel(mlflow.pyfunc.PythonModel):
    """Scores tables with a saved :class:`pipeline.detector.AnomalyDetector`."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        from pipeline.detector import AnomalyDetector

        self.detector = AnomalyDetector.load(context.artifacts["detector"])

    # the DataFrame hint silences MLflow's "add type hints" warning; a DataFrame hint enables
    # no extra validation (the logged signature still describes the input)
    def predict(  # type: ignore[no-untyped-def]
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        params = params or {}
        threshold = params.get("threshold")
        result = self.detector.score(
            pd.DataFrame(model_input),
            threshold=None if threshold is None or threshold < 0 else float(threshold),
            mc_samples=params.get("mc_samples"),
            model_version=str(params.get("model_version", "")),
        )
        return result.all_rows()


mlflow.models.set_model(VAEAnomalyModel())
