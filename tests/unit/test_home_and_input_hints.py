"""Defaults from the home (never the install location), the sample files, and input hints:
another delimiter, a column differing only by case or spaces, dates, missing markers, a
training table without variation, an unreachable tracking server within a time budget."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.config import PROJECT_ROOT, DataSettings, Settings, home, sample_path
from pipeline.detector import AnomalyDetector
from pipeline.ingest import MISSING_MARKERS, InputError, iter_scoring_chunks, read_table
from pipeline.registry import (
    RegistryUnavailableError,
    champion_version,
    resolve_alias,
    version_ref,
)
from pipeline.sample_data import write_sample
from pipeline.schema import SchemaError, check_scoring_frame, infer_schema
from tests.conftest import ROOT, quick_settings


def test_state_goes_under_the_working_directory_or_vae_anomaly_home(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VAE_ANOMALY_HOME", raising=False)
    monkeypatch.delenv("VAE_ANOMALY_SCORING__OUTPUT_ROOT", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    settings = Settings()
    assert home() == work.resolve()
    assert (
        settings.tracking.resolved_uri() == f"sqlite:///{work.resolve() / 'mlruns' / 'mlflow.db'}"
    )
    assert settings.scoring.output_root == work.resolve() / "data" / "scored"
    assert sample_path("batch.csv") == work.resolve() / "data" / "sample" / "batch.csv"
    # nothing from where the code is installed
    assert str(PROJECT_ROOT) not in settings.tracking.resolved_uri()

    elsewhere = tmp_path / "home"
    monkeypatch.setenv("VAE_ANOMALY_HOME", str(elsewhere))
    settings = Settings()
    assert settings.tracking.resolved_uri() == f"sqlite:///{elsewhere / 'mlruns' / 'mlflow.db'}"
    assert settings.scoring.output_root == elsewhere / "data" / "scored"


def test_the_shipped_generator_writes_the_committed_sample_files(tmp_path):
    written = write_sample(tmp_path)
    assert sorted(p.name for p in written) == ["batch.csv", "train.csv"]
    for name in ("train.csv", "batch.csv"):
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / "sample" / name).read_bytes()
    assert write_sample(tmp_path) == []  # existing files are kept


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_a_file_with_another_delimiter_is_named_as_such(tmp_path, delimiter, name):
    path = tmp_path / "export.csv"
    path.write_text(delimiter.join(["id", "amount", "country"]) + "\nA" + delimiter + "1,5;DE\n")
    for read in (read_table, lambda p: list(iter_scoring_chunks(p))):
        with pytest.raises(InputError, match=f"header looks {name}-separated") as error:
            read(path)
        assert "missing column" not in str(error.value)


def test_a_column_differing_only_by_case_or_spaces_is_named():
    schema = infer_schema(
        pd.DataFrame({"amount": [1.0, 2.0] * 20, "kind": ["a", "b"] * 20}), DataSettings()
    )
    batch = pd.DataFrame({" Amount ": [1.0], "kind": ["a"]})
    with pytest.raises(SchemaError) as error:
        check_scoring_frame(batch, schema, source="batch.csv")
    message = str(error.value)
    assert "missing column(s) ['amount']" in message
    assert "' Amount ' differs from the trained 'amount' only by case or spaces" in message
    # without a near name, no hint
    with pytest.raises(SchemaError) as plain:
        check_scoring_frame(pd.DataFrame({"kind": ["a"]}), schema)
    assert "differs" not in str(plain.value)


def test_a_date_column_is_passed_through_not_modeled(caplog):
    rng = np.random.default_rng(0)
    days = pd.date_range("2026-01-01", periods=5).strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "booked_on": rng.choice(days, 200),
            "booked_at": [f"2026-01-0{1 + i % 5}T1{i % 10}:30:00Z" for i in range(200)],
            "amount": rng.normal(size=200),
            "kind": rng.choice(["a", "b"], 200),
        }
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.schema"):
        schema = infer_schema(frame, DataSettings())
    assert schema.roles == {
        "booked_on": "id",
        "booked_at": "id",
        "amount": "numeric",
        "kind": "categorical",
    }
    assert "column 'booked_on' holds dates" in caplog.text
    # Parquet's datetime type too; a text column of other words stays categorical
    typed = frame.assign(booked_on=pd.to_datetime(frame["booked_on"]))
    assert infer_schema(typed, DataSettings()).roles["booked_on"] == "id"
    detector = AnomalyDetector(quick_settings()).fit(frame)
    later = frame.assign(booked_on="2027-06-30")  # dates never seen: no effect on the score
    assert np.array_equal(detector.score_samples(later), detector.score_samples(frame))


def test_none_dash_and_na_are_missing_in_training_and_scoring(tmp_path):
    assert {"None", "-", "<NA>", "", "NA", "n/a", "null"} <= set(MISSING_MARKERS)
    path = tmp_path / "t.csv"
    path.write_text("id,x,c\nA,1.5,red\nB,None,None\nC,-,-\nD,<NA>,<NA>\nE,2,blue\n")
    training = read_table(path)
    assert training["x"].isna().tolist() == [False, True, True, True, False]
    assert training["c"].isna().tolist() == [False, True, True, True, False]
    [chunk] = iter_scoring_chunks(path, string_columns=["id", "c"], numeric_columns=["x"])
    assert chunk.frame["x"].isna().tolist() == [False, True, True, True, False]
    assert chunk.frame["c"].isna().tolist() == [False, True, True, True, False]
    # the rows as read keep the text as the file held it
    assert chunk.rows_as_read(np.array([3, 4]))["x"].tolist() == ["None", "-"]


def test_training_data_without_variation_is_refused():
    identical = pd.DataFrame({"id": [f"R{i}" for i in range(500)], "x": 3.0, "c": "red"})
    with pytest.raises(SchemaError, match="no variation: all 500 rows hold the same values"):
        AnomalyDetector(quick_settings()).fit(identical)
    # one column with variation is enough
    AnomalyDetector(quick_settings()).fit(identical.assign(x=np.arange(500.0) % 7))


def test_an_unreachable_tracking_server_fails_within_the_time_budget(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__RESOLVE_TIMEOUT_SECONDS", "3")
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError) as error:
        resolve_alias(Settings())
    assert time.monotonic() - started < 6
    message = str(error.value)
    assert "cannot resolve models:/vae-anomaly@champion at http://127.0.0.1:9" in message
    assert "check that the tracking server is up" in message
    assert "VAE_ANOMALY_TRACKING__RESOLVE_TIMEOUT_SECONDS" in message
    # MLflow's own retry settings are left as they were
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


@pytest.mark.parametrize("ask", ["version", "champion"])
def test_a_server_that_is_down_is_not_a_missing_version_nor_no_champion(monkeypatch, ask):
    # promote reads the version and the champion: "has no version" or "no champion" (which
    # would skip the gate's comparison with the champion) must not stand in for "unreachable"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("VAE_ANOMALY_TRACKING__RESOLVE_TIMEOUT_SECONDS", "2")
    read = (
        (lambda: version_ref(Settings(), "2"))
        if ask == "version"
        else (lambda: champion_version(Settings()))
    )
    with pytest.raises(RegistryUnavailableError, match="check that the tracking server is up"):
        read()
