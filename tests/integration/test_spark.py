"""The registered model scores a Spark DataFrame through ``mlflow.pyfunc.spark_udf``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
import pytest

from flows.train import train_flow
from pipeline.config import Settings
from pipeline.registry import load_detector, resolve_alias

pyspark = pytest.importorskip("pyspark")
if shutil.which("java") is None:
    pytest.skip("Spark needs a Java runtime (java on PATH)", allow_module_level=True)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    # the Spark workers must run this environment's python, not the system one
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("vae-anomaly-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_spark_udf_gives_the_same_scores_as_pandas(
    spark, mlflow_store, small_train_csv, small_batch_csv
):
    train_flow(data_path=str(small_train_csv))
    ref = resolve_alias(Settings(), "champion")
    batch = pd.read_csv(small_batch_csv).drop(columns=["label", "anomaly_kind", "anomaly_column"])
    batch = batch.astype({"hour": "float64", "quantity": "float64"})
    expected = load_detector(ref).score(batch).scored

    udf = mlflow.pyfunc.spark_udf(
        spark,
        "models:/vae-anomaly@champion",
        env_manager="local",
        result_type="anomaly_score double, is_anomaly int, reasons string",
    )
    frame = spark.createDataFrame(batch)  # type: ignore[attr-defined]
    columns = [frame[c] for c in batch.columns]
    scored = frame.withColumn("out", udf(*columns)).select("transaction_id", "out.*").toPandas()
    scored = scored.set_index("transaction_id").loc[expected["transaction_id"]]
    np.testing.assert_allclose(scored["anomaly_score"], expected["anomaly_score"], rtol=1e-5)
    assert scored["is_anomaly"].tolist() == expected["is_anomaly"].tolist()
