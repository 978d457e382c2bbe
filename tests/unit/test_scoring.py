"""The score definition: what the anomaly score of a row is."""

import numpy as np
import pytest

from pipeline.detector import AnomalyDetector
from tests.conftest import mixed_frame, quick_settings


@pytest.fixture(scope="module")
def fitted() -> AnomalyDetector:
    return AnomalyDetector(quick_settings()).fit(mixed_frame(400))


def test_default_score_is_the_max_of_the_standardised_logs_of_the_terms(fitted, frame):
    out = fitted.score(frame).scored
    st = fitted.score_stats_
    z_recon = (np.log(out["recon_error"] + st.recon_eps) - st.log_recon_mean) / st.log_recon_std
    z_kl = (np.log(out["kl"] + st.kl_eps) - st.log_kl_mean) / st.log_kl_std
    np.testing.assert_allclose(out["anomaly_score"], np.maximum(z_recon, z_kl), rtol=1e-9)
    assert fitted.settings.scoring.score == "log_max"
    # the statistics come from the training rows: their logs are centred there
    assert st.recon_eps > 0 and st.kl_eps > 0 and st.log_recon_std > 0
