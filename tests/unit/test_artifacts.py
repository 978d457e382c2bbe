"""A fitted detector on disk: round trip, no pickle, checksums, what a loaded model keeps."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.checksums import ChecksumError
from pipeline.config import ScoringSettings
from pipeline.detector import AnomalyDetector
from tests.conftest import mixed_frame, quick_settings


@pytest.fixture(scope="module")
def fitted() -> AnomalyDetector:
    return AnomalyDetector(quick_settings()).fit(mixed_frame(400))


def test_save_load_round_trip_gives_identical_scores(fitted, frame, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = AnomalyDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.score_samples(frame), fitted.score_samples(frame))
    assert loaded.threshold_ == fitted.threshold_
    pd.testing.assert_frame_equal(loaded.score(frame).scored, fitted.score(frame).scored)
    # a log_max model writes no keys that only other scores use: earlier releases read it
    stats = json.loads((tmp_path / "model" / "detector.json").read_text())["score_stats"]
    assert "tails" not in stats and "precision" not in stats


@pytest.mark.parametrize("score", ["auto", "tail_max"])
def test_a_table_of_categories_scores_the_same_after_a_round_trip(tmp_path, score):
    # the default (scaled_elbo) saves its feature weights, tail_max its two views' quantiles;
    # both are read back
    frame = mixed_frame(400)[["colour", "size"]]
    detector = AnomalyDetector(quick_settings(scoring={"score": score})).fit(frame)
    assert detector.settings.scoring.score == {"auto": "scaled_elbo"}.get(score, score)
    detector.save(tmp_path / "model")
    loaded = AnomalyDetector.load(tmp_path / "model")
    assert loaded.score_stats_ == detector.score_stats_
    assert bool(loaded.score_stats_.precision) == (score == "auto")
    assert bool(loaded.score_stats_.tails) == (score == "tail_max")
    np.testing.assert_array_equal(loaded.score_samples(frame), detector.score_samples(frame))
    pd.testing.assert_frame_equal(loaded.score(frame).scored, detector.score(frame).scored)


def test_no_pickle_on_disk(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    names = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert names == [
        "checksums.json",
        "detector.json",
        "preprocess.json",
        "reference.parquet",
        "weights.pt",
    ]
    json.loads((tmp_path / "model" / "detector.json").read_text())  # plain JSON


def test_altered_artifact_is_refused_naming_the_file(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    weights = path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"weights\.pt"):
        AnomalyDetector.load(path)


@pytest.mark.parametrize("manifest", ["drop weights.pt", "empty", "not json"])
def test_a_manifest_that_does_not_vouch_for_every_model_file_is_refused(fitted, tmp_path, manifest):
    # an attacker who alters a file and removes its line from the manifest (or empties it)
    # must not get the altered file loaded
    path = fitted.save(tmp_path / "model")
    sums = json.loads((path / "checksums.json").read_text())
    weights = path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    text = {
        "drop weights.pt": json.dumps({k: v for k, v in sums.items() if k != "weights.pt"}),
        "empty": "{}",
        "not json": "weights.pt: ok",
    }[manifest]
    (path / "checksums.json").write_text(text)
    expected = r"not a valid manifest" if manifest == "not json" else r"does not list.*weights\.pt"
    with pytest.raises(ChecksumError, match=expected):
        AnomalyDetector.load(path)


def test_a_loaded_model_keeps_what_defines_it_and_is_run_as_its_caller_says(tmp_path, monkeypatch):
    # what the score is comes from the model; how to run it comes from the caller's
    # arguments, never from the training settings nor from this machine's environment
    saved = AnomalyDetector(
        quick_settings(training={"max_epochs": 2}, scoring={"top_reasons": 5, "kl_weight": 0.5})
    ).fit(mixed_frame(100))
    saved.save(tmp_path / "m")
    monkeypatch.setenv("VAE_ANOMALY_SCORING__TOP_REASONS", "2")
    monkeypatch.setenv("VAE_ANOMALY_TRAINING__DEVICE", "cuda")  # would fail here if read
    loaded = AnomalyDetector.load(tmp_path / "m", device="cpu")
    assert loaded.settings.scoring.kl_weight == 0.5  # what the score is: from the model
    assert loaded.settings.scoring.top_reasons == ScoringSettings().top_reasons  # not 5, not 2
    assert loaded.device_ == "cpu"
    np.testing.assert_array_equal(
        loaded.score_samples(mixed_frame(50)), saved.score_samples(mixed_frame(50))
    )
    batch = mixed_frame(300, seed=9)
    batch.loc[:40, "y"] = 10.0  # broken y = 2x: flagged rows with reasons
    one = loaded.score(batch, scoring=ScoringSettings(top_reasons=1)).scored
    flagged = one[one["is_anomaly"] == 1]
    assert len(flagged) > 0
    assert (flagged["reasons"].str.count(r"\(expected") == 1).all()
