"""The MLflow pyfunc model, defined in code (MLflow "models from code").

MLflow logs this file by path and runs it at load time; the detector's files (torch state
dict, JSON preprocessing and metadata, checksums) come in as artifacts and are verified in
``load_context``. No pickled Python object is involved, so loading works with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.

``predict`` returns one row per input row, in input order: the id columns, ``anomaly_score``,
``recon_error``, ``kl``, ``score_percentile``, ``is_anomaly``, ``reasons``, ``model_name``,
``model_version``, ``threshold`` and ``rejected_reason`` (empty for scored rows; for a row that
cannot be scored it says why, and its scores are NaN). Params: ``threshold`` (override),
``mc_samples`` (Monte Carlo scoring), ``model_version`` (written into the output; when not
given, the registered version of this model, looked up once in the registry the model was
loaded from, e.g. by ``mlflow models predict -m models:/vae-anomaly@champion``).
"""

import logging
from pathlib import Path

import mlflow
import pandas as pd

logger = logging.getLogger(__name__)


class VAEAnomalyModel(mlflow.pyfunc.PythonModel):
    """Scores tables with a saved :class:`pipeline.detector.AnomalyDetector`."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        from pipeline.detector import AnomalyDetector

        self.detector = AnomalyDetector.load(context.artifacts["detector"])
        self._registered_version = None
        # <model>/artifacts/detector: the model's MLmodel (its run and model id) is two up
        self._model_dir = Path(context.artifacts["detector"]).resolve().parent.parent

    def registered_version(self) -> str:
        """The registry version of this model ("" when it cannot be told), looked up once."""
        if self._registered_version is None:
            self._registered_version = _look_up_version(
                self._model_dir, self.detector.settings.tracking.registered_model
            )
        return self._registered_version

    # the DataFrame hint silences MLflow's "add type hints" warning; a DataFrame hint enables
    # no extra validation (the logged signature still describes the input)
    def predict(  # type: ignore[no-untyped-def]
        self, context, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        params = params or {}
        threshold = params.get("threshold")
        result = self.detector.score(
            pd.DataFrame(model_input),
            # -1 (the signature's default) means the model's threshold; any other value is a
            # cut-off (log_max scores are z-scores: a negative one is a real threshold)
            threshold=None if threshold is None or threshold == -1 else float(threshold),
            mc_samples=params.get("mc_samples"),
            model_version=str(params.get("model_version") or self.registered_version()),
        )
        return result.all_rows()


def _look_up_version(model_dir, name):  # type: ignore[no-untyped-def]
    """The version of registered model ``name`` made from the model in ``model_dir`` (its
    MLflow model id, else its run), in the registry of the current tracking URI; "" when no
    tracking URI is set (asking would create a database in the working directory), the model
    is not registered or the registry cannot be reached."""
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if not is_tracking_uri_set():
        return ""
    try:
        info = mlflow.models.Model.load(str(model_dir))
        versions = mlflow.MlflowClient().search_model_versions(
            f"name = '{name}' and run_id = '{info.run_id}'"
        )
        model_id = getattr(info, "model_id", None)
        same = [v for v in versions if model_id is None or v.model_id in (None, model_id)]
        return str(max(int(v.version) for v in same)) if same else ""
    except Exception as exc:  # the scores do not depend on it: say so and go on
        logger.warning("model_version left empty: the registry could not tell it (%s)", exc)
        return ""


mlflow.models.set_model(VAEAnomalyModel())
