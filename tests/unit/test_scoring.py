"""The score definition: what the anomaly score of a row is."""

import math

import numpy as np
import pytest

from pipeline.detector import AnomalyDetector
from pipeline.promotion import reference_nll
from pipeline.scoring import (
    TAIL_KNOTS,
    VARIANCE_FLOOR,
    ScoreStats,
    TailScale,
    scaled_precision,
    tail_views,
)
from tests.conftest import mixed_frame, quick_settings
from vae.infer import kl_array, reconstruct, score_arrays


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


def test_tail_surprise_is_minus_log_the_share_of_training_records_at_least_as_high():
    # Given training scores 1..1000, when a value is scored, then its surprise is -log of the
    # share of training records above it (itself counted once): the median about log 2, the
    # highest log(n+1),
    # and beyond it one more per standard deviation of the training logs (it keeps ranking)
    train = np.arange(1.0, 1001.0)
    scale = TailScale.fit(train)
    assert scale.rows == 1000 and len(scale.knots) == 1000  # every record's score kept
    assert len(TailScale.fit(np.arange(3.0 * TAIL_KNOTS)).knots) == TAIL_KNOTS + 1
    one_std_beyond = (1000.0 + scale.eps) * math.exp(scale.std) - scale.eps  # on the log scale
    got = scale.surprise(np.array([0.0, 500.0, 1000.0, one_std_beyond, np.nan]))
    assert got[0] == 0.0
    assert got[1] == pytest.approx(-math.log(1 - 500 / 1001), abs=2e-3)
    assert got[2] == pytest.approx(math.log(1001))
    assert got[3] == pytest.approx(math.log(1001) + 1.0, rel=1e-6)
    assert np.isnan(got[4])
    assert np.all(np.diff(scale.surprise(np.linspace(0.5, 2000.0, 500))) >= 0)


def test_tail_surprise_puts_scores_of_different_tails_on_one_scale():
    # a light-tailed and a heavy-tailed score: the record at the same training share gets the
    # same surprise, so the larger of two surprises is "the rarer view"
    rng = np.random.default_rng(0)
    light, heavy = rng.normal(50.0, 1.0, 5000), rng.pareto(1.1, 5000) * 100.0
    for values in (light, heavy):
        scale = TailScale.fit(values)
        at_99 = scale.surprise(np.quantile(values, [0.99]))[0]
        assert at_99 == pytest.approx(-math.log(0.01), abs=0.05)
    # a tie (many records with the same score, as on a table of few categories): the tied
    # records do not count as higher, so repeated training rows do not mask their own value
    tied = TailScale.fit(np.r_[np.arange(1.0, 901.0), np.full(100, 1000.0)])
    below_tie, at_tie = tied.surprise(np.array([900.0, 1000.0]))
    assert below_tie == pytest.approx(-math.log(1 - 900 / 1001), abs=0.01)  # 100 above it
    assert at_tie == pytest.approx(math.log(1001))  # none above it


def test_default_on_a_table_of_categories_is_the_elbo_with_errors_in_units_of_training_variance():
    # Given a table of categorical columns (the default score there is scaled_elbo), when rows
    # are scored, then each score is recon / 2 + KL, recon the squared error of each one-hot
    # indicator divided by its training variance q (1 - q) (q: the category's share of the
    # training part), recomputed here by hand from the decoder's output
    frame = mixed_frame(400)[["colour", "size"]]
    detector = AnomalyDetector(quick_settings()).fit(frame)
    assert detector.settings.scoring.score == "scaled_elbo"
    assert detector.feature_loss_.categories == ()  # squared errors, not the likelihood
    x = detector.preprocessor_.transform(frame)
    weights = np.asarray(detector.score_stats_.precision)
    # one weight per encoded feature: q (1 - q) with q a share of the training part's rows
    n = detector.n_train_rows_
    assert len(weights) == x.shape[1]
    # (compared with every possible share k / n, not inverted: the root of q (1 - q) = 1 / w
    # is ill-conditioned near q = 1/2, where float sums of another CPU could tip it)
    shares = np.arange(n + 1) / n
    possible = shares * (1 - shares)
    nearest = np.abs(1 / weights[:, None] - possible[None, :]).min(axis=1)
    np.testing.assert_array_less(nearest, 1e-12)
    assert np.all(weights <= 1 / VARIANCE_FLOOR)
    recon = reconstruct(detector.model_, x)
    kl = kl_array(detector.model_, x)
    scaled = ((x - recon) ** 2 * weights).sum(axis=1)
    out = detector.score(frame).scored
    np.testing.assert_allclose(out["recon_error"], scaled, rtol=1e-4)
    kl_weight = detector.settings.scoring.kl_weight
    expected = 0.5 * out["recon_error"] + kl_weight * out["kl"]
    np.testing.assert_allclose(out["anomaly_score"], expected, rtol=1e-12)
    np.testing.assert_allclose(out["kl"], kl, rtol=1e-4)


def test_scaled_precision_weighs_a_rare_category_by_about_one_over_its_share():
    # an indicator in 1 of 50 rows: variance 0.02 * 0.98; in 1 of 5,000 rows: the floor;
    # a standardised numeric feature: 1
    x = np.zeros((5000, 3))
    x[::50, 0] = 1.0
    x[0, 1] = 1.0
    x[:, 2] = np.random.default_rng(0).normal(size=5000)
    x[:, 2] = (x[:, 2] - x[:, 2].mean()) / x[:, 2].std()
    weights = scaled_precision(x)
    assert weights[0] == pytest.approx(1 / (0.02 * 0.98))
    assert weights[1] == pytest.approx(1 / VARIANCE_FLOOR)
    assert weights[2] == pytest.approx(1.0)


def test_tail_max_is_the_larger_tail_surprise_of_the_negative_elbo_and_pearsons_chi_square():
    # Given a table of categorical columns scored by tail_max, when rows are scored, then each
    # score is the larger of the two views' tail surprises, computed from the saved training
    # statistics
    frame = mixed_frame(400)[["colour", "size"]]
    detector = AnomalyDetector(quick_settings(scoring={"score": "tail_max"})).fit(frame)
    assert detector.settings.scoring.score == "tail_max"
    x = detector.preprocessor_.transform(frame)
    terms = score_arrays(detector.model_, x, loss=detector.feature_loss_)
    assert terms.pearson is not None and np.all(terms.pearson >= 0)
    kl_weight = detector.settings.scoring.kl_weight
    elbo, chi = tail_views(terms.recon, terms.kl, terms.pearson, kl_weight)
    np.testing.assert_allclose(elbo, 0.5 * terms.recon + kl_weight * terms.kl)
    scales = detector.score_stats_.tails
    # fitted on the training part (the rows that were not held out)
    assert scales[0].rows == scales[1].rows == detector.n_train_rows_
    expected = np.maximum(scales[0].surprise(elbo), scales[1].surprise(chi))
    np.testing.assert_allclose(detector.score_samples(frame), expected, rtol=1e-12)


def test_tail_max_needs_a_categorical_column():
    numeric = mixed_frame(200)[["x", "y"]]
    with pytest.raises(ValueError, match="no categorical column"):
        AnomalyDetector(quick_settings(scoring={"score": "tail_max"})).fit(numeric)


def test_the_likelihood_bound_of_a_model_of_categories_does_not_depend_on_its_score():
    # Given two models of the same table trained alike (the score does not change training),
    # one scored by scaled_elbo (the default) and one by tail_max, when the promotion gate
    # measures how likely the reference rows are, then both get the same bound: the
    # categorical likelihood of the decoder, not scaled_elbo's variance-weighted errors
    # (else an upgrade would compare a tail_max champion with another quantity)
    frame = mixed_frame(400)[["colour", "size"]]
    scaled = AnomalyDetector(quick_settings()).fit(frame)
    tail = AnomalyDetector(quick_settings(scoring={"score": "tail_max"})).fit(frame)
    assert scaled.settings.scoring.score == "scaled_elbo"
    np.testing.assert_array_equal(
        scaled.model_.fc_out.weight.detach().numpy(), tail.model_.fc_out.weight.detach().numpy()
    )
    bound = reference_nll(scaled, frame)
    np.testing.assert_allclose(bound, reference_nll(tail, frame), rtol=1e-9)
    # and it is the negative ELBO with the categorical likelihood, not the score's terms
    out = scaled.score(frame).scored
    assert not np.allclose(bound, out["recon_error"] / 2 + out["kl"])


def test_reasons_of_a_scaled_elbo_model_measure_the_score_itself():
    # the explainer scores its candidate changes with the same feature weights as the score:
    # unchanged rows get back exactly their anomaly scores
    frame = mixed_frame(400)[["colour", "size"]]
    detector = AnomalyDetector(quick_settings()).fit(frame)
    x = detector.preprocessor_.transform(frame)
    again = detector.explainer_._window_scores(x, np.arange(len(x)))
    np.testing.assert_allclose(again, detector.score_samples(frame), rtol=1e-5)


def test_a_scaled_elbo_model_without_its_feature_weights_is_refused():
    # the score statistics were fitted on the weighted errors: scoring with the decoder's
    # precision instead would be silently wrong
    stats = ScoreStats(1.0, 1.0, 1.0, 1.0, precision=(1.0, 2.0))
    np.testing.assert_array_equal(stats.feature_weights("scaled_elbo", 2), [1.0, 2.0])
    with pytest.raises(ValueError, match="2 feature weights for 3 features"):
        stats.feature_weights("scaled_elbo", 3)
    assert ScoreStats(1.0, 1.0, 1.0, 1.0).feature_weights("log_max", 3) is None
