import math
import typing

import numpy as np
import torch

from pipeline.config import ModelSettings
from vae import (
    VAE,
    TrainConfig,
    VAEConfig,
    default_architecture,
    fit_vae,
    kl_array,
    reconstruct,
    score_arrays,
)
from vae.infer import CATEGORY_FLOOR, FeatureLoss, aligned_window, as_tensor
from vae.loss import ElboTerms, elbo_terms, influence_weights, kl_divergence, reconstruction_error
from vae.model import _ACTIVATIONS
from vae.train import _evaluate, _WeightAverage, cpu_threads


def test_kl_is_zero_at_the_prior():
    mu = torch.zeros(4, 3)
    logvar = torch.zeros(4, 3)
    assert torch.allclose(kl_divergence(mu, logvar), torch.zeros(4))


def test_kl_matches_closed_form():
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[math.log(4.0), 0.0]])
    # 0.5 * sum(mu^2 + sigma^2 - 1 - log sigma^2)
    expected = 0.5 * ((1 + 4 - 1 - math.log(4.0)) + (4 + 1 - 1 - 0))
    assert kl_divergence(mu, logvar).item() == pytest_approx(expected)


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-6)


def test_mse_summed_over_features_matches_hand_computation():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    recon = torch.tensor([[1.5, 2.0, 1.0], [1.0, -1.0, 0.5]])
    terms = elbo_terms(x, recon, torch.zeros(2, 2), torch.zeros(2, 2))
    assert terms.recon.tolist() == [0.25 + 0.0 + 4.0, 1.0 + 1.0 + 0.25]
    assert reconstruction_error(x, recon)[0].tolist() == [0.25, 0.0, 4.0]
    # loss = batch mean of recon + beta * KL; KL is 0 here
    assert terms.loss(beta=1.0).item() == pytest_approx((4.25 + 2.25) / 2)
    assert terms.loss(beta=1.0, feature_reduction="mean").item() == pytest_approx((4.25 + 2.25) / 6)


def test_network_is_not_linear():
    torch.manual_seed(0)
    model = VAE(VAEConfig(n_features=5, hidden_dims=(16, 8), latent_dim=2)).eval()
    a, b = torch.randn(1, 5), torch.randn(1, 5)
    with torch.no_grad():
        f = lambda v: model(v).recon  # noqa: E731
        additive = f(a + b) - f(a) - f(b) + f(torch.zeros(1, 5))
    assert additive.abs().max().item() > 1e-3
    assert any(isinstance(m, torch.nn.GELU) for m in model.modules())


def test_shapes_and_sampling_switch():
    torch.manual_seed(0)
    model = VAE(VAEConfig(n_features=7, hidden_dims=(12,), latent_dim=3))
    x = torch.randn(10, 7)
    model.train()
    out1, out2 = model(x), model(x)
    assert out1.recon.shape == (10, 7) and out1.mu.shape == (10, 3) and out1.logvar.shape == (10, 3)
    assert not torch.equal(out1.recon, out2.recon)  # sampled in training
    model.eval()
    assert torch.equal(model(x).recon, model(x).recon)  # latent mean when scoring


def test_default_architecture_scales_with_width():
    small, wide = default_architecture(4), default_architecture(400)
    assert small["hidden_dims"][0] == 32 and small["latent_dim"] == 2
    assert wide["hidden_dims"][0] == 256 and wide["latent_dim"] == 16


def _correlated(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    w = rng.normal(size=(2, 10))
    x = np.tanh(z @ w) + 0.05 * rng.normal(size=(n, 10))
    return ((x - x.mean(0)) / x.std(0)).astype(np.float32)


def _active_dims(reduction: str) -> int:
    x = _correlated(800)
    cfg = VAEConfig(n_features=10, hidden_dims=(32, 16), latent_dim=4)
    config = TrainConfig(max_epochs=15, beta=1.0, feature_reduction=reduction, batch_size=100)
    result = fit_vae(x[:640], x[640:], cfg, config)
    with torch.no_grad():
        mu, _ = result.model.encode(torch.from_numpy(x))
    return int((mu.var(dim=0) > 0.01).sum())


def test_mean_reduction_collapses_the_latent_space_and_sum_does_not():
    # averaging the squared error over features lets KL win: no latent dimension carries
    # information; summing (a Gaussian log-likelihood) keeps the latents alive
    assert _active_dims("mean") == 0
    assert _active_dims("sum") >= 2


def test_fit_is_seeded_and_scoring_deterministic():
    x = _correlated(400)
    cfg = VAEConfig(n_features=10, hidden_dims=(16,), latent_dim=2)
    a = fit_vae(x[:300], x[300:], cfg, TrainConfig(max_epochs=3, seed=5))
    b = fit_vae(x[:300], x[300:], cfg, TrainConfig(max_epochs=3, seed=5))
    sa, sb = score_arrays(a.model, x), score_arrays(b.model, x)
    np.testing.assert_array_equal(sa.recon, sb.recon)
    np.testing.assert_array_equal(score_arrays(a.model, x).kl, sa.kl)
    mc1 = score_arrays(a.model, x, mc_samples=4, seed=1)
    assert not np.array_equal(mc1.recon, sa.recon)  # Monte Carlo is an explicit option


def test_a_rows_inference_does_not_depend_on_the_rows_passed_with_it():
    # Given a model, when the same rows go through inference alone, in blocks of 7 or 100,
    # or all at once, then every number is bit-identical: each forward pass has one shape.
    # (Before fixed windows, blocks of 1 and 7 rows differed in the last bits on an AMD
    # EPYC: its matrix kernels sum a 1-row or 7-row product in another order.)
    torch.manual_seed(3)
    model = VAE(VAEConfig(n_features=10, hidden_dims=(32, 16), latent_dim=4)).eval()
    with torch.no_grad():
        model.decoder_logvar.normal_()  # a learned-looking precision
    x = _correlated(250, seed=2)
    whole = score_arrays(model, x)
    whole_recon, whole_kl = reconstruct(model, x), kl_array(model, x)
    for size in (1, 7, 100, 16384):
        starts = range(0, len(x), size)
        parts = [score_arrays(model, x[i : i + size]) for i in starts]
        np.testing.assert_array_equal(np.concatenate([p.recon for p in parts]), whole.recon)
        np.testing.assert_array_equal(np.concatenate([p.kl for p in parts]), whole.kl)
        np.testing.assert_array_equal(
            np.concatenate([reconstruct(model, x[i : i + size]) for i in starts]), whole_recon
        )
        np.testing.assert_array_equal(
            np.concatenate([kl_array(model, x[i : i + size]) for i in starts]), whole_kl
        )
    # the same rows 1 to 7 rows further down their window (another memory alignment)
    for shift in range(1, 8):
        shifted = score_arrays(model, np.concatenate([x[:shift], x]))
        np.testing.assert_array_equal(shifted.recon[shift:], whole.recon)
        np.testing.assert_array_equal(shifted.kl[shift:], whole.kl)
    # other torch thread counts (a Dask worker runs 1, a 6-core machine 6)
    for threads in (1, 3):
        with cpu_threads(threads):
            np.testing.assert_array_equal(score_arrays(model, x).recon, whole.recon)
    # a window that is not a whole number of kernel panels is rounded up to one
    assert aligned_window(1) == aligned_window(64) == 64 and aligned_window(100) == 128
    np.testing.assert_array_equal(score_arrays(model, x, window=100).recon, whole.recon)


def test_pearsons_chi_square_of_categorical_blocks_is_per_row_and_from_the_class_probabilities():
    # Given a model whose features 4..6 and 7..9 are one-hot blocks, when rows are scored
    # alone or in blocks, then each row's Pearson chi-square is bit-identical, and it is the
    # sum over blocks of 1/p - 1, p the decoder's clipped and normalised class probability
    torch.manual_seed(3)
    model = VAE(VAEConfig(n_features=10, hidden_dims=(32, 16), latent_dim=4)).eval()
    rng = np.random.default_rng(0)
    x = _correlated(120, seed=2)
    blocks = [(4, 7), (7, 10)]
    for a, b in blocks:
        x[:, a:b] = np.eye(b - a, dtype=np.float32)[rng.integers(0, b - a, len(x))]
    x[:5, 7:10] = 0.0  # a category the encoding does not keep
    loss = FeatureLoss(blocks)
    whole = score_arrays(model, x, loss=loss)
    for size in (1, 7, 100):
        parts = [score_arrays(model, x[i : i + size], loss=loss) for i in range(0, 120, size)]
        np.testing.assert_array_equal(np.concatenate([p.pearson for p in parts]), whole.pearson)
    out = reconstruct(model, x)
    expected = np.zeros(len(x))
    for a, b in blocks:
        p = np.clip(out[:, a:b], CATEGORY_FLOOR, 1.0)
        other = np.clip(1.0 - out[:, a:b].sum(1), CATEGORY_FLOOR, 1.0)
        seen = x[:, a:b].sum(1) > 0.5
        chosen = np.where(seen, (p * x[:, a:b]).sum(1), other) / (p.sum(1) + other)
        expected += 1.0 / chosen - 1.0
    np.testing.assert_allclose(whole.pearson, expected, rtol=1e-4)
    assert score_arrays(model, x).pearson is None  # no blocks, no chi-square


def test_the_settings_offer_exactly_the_activations_the_model_builds():
    # the settings' Literal (checked by pydantic and mypy) is a second spelling of the names
    assert set(typing.get_args(ModelSettings.model_fields["activation"].annotation)) == set(
        _ACTIVATIONS
    )


def test_padded_inference_computes_what_the_model_computes():
    # the zero-padded layers of the inference passes give the model's own numbers (up to
    # float32 summation order), for every activation, with dropout off at inference
    x = _correlated(200, seed=4)
    for activation in _ACTIVATIONS:
        torch.manual_seed(5)
        config = VAEConfig(
            n_features=10, hidden_dims=(35, 19), latent_dim=3, activation=activation, dropout=0.1
        )
        model = VAE(config).eval()
        with torch.no_grad():
            model.decoder_logvar.normal_()
            out = model(torch.from_numpy(x), sample=False)
            expected = elbo_terms(
                torch.from_numpy(x), out.recon, out.mu, out.logvar, model.feature_precision()
            )
        scores = score_arrays(model, x)
        np.testing.assert_allclose(scores.recon, expected.recon.numpy(), rtol=1e-5)
        np.testing.assert_allclose(scores.kl, expected.kl.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reconstruct(model, x), out.recon.numpy(), rtol=1e-5, atol=1e-6)


def test_early_stopping_restores_the_best_epoch():
    x = _correlated(300)
    cfg = VAEConfig(n_features=10, hidden_dims=(16,), latent_dim=2)
    result = fit_vae(
        x[:200], x[200:], cfg, TrainConfig(max_epochs=200, patience=3, learning_rate=5e-2)
    )
    assert result.stopped_early
    best = min(h.val_loss for h in result.history)
    assert result.history[result.best_epoch - 1].val_loss == best


def test_learned_variance_loss_is_the_gaussian_nll():
    x = torch.tensor([[1.0, 2.0]])
    recon = torch.tensor([[0.0, 0.0]])
    precision = torch.tensor([4.0, 0.25])  # sigma^2 = 0.25 and 4
    terms = elbo_terms(x, recon, torch.zeros(1, 1), torch.zeros(1, 1), precision)
    # weighted squared error: 1 * 4 + 4 * 0.25 = 5; NLL = 0.5 * (5 + log 0.25 + log 4) = 2.5
    assert terms.recon.item() == pytest_approx(5.0)
    assert terms.loss(beta=1.0).item() == pytest_approx(2.5)


def test_learned_variance_is_floored_and_fixed_variance_is_frozen():
    fixed = VAE(VAEConfig(n_features=3, decoder_variance="fixed"))
    assert not fixed.decoder_logvar.requires_grad
    assert torch.equal(fixed.feature_precision(), torch.ones(3))
    learned = VAE(VAEConfig(n_features=3, decoder_variance="learned", min_variance=1e-2))
    with torch.no_grad():
        learned.decoder_logvar.fill_(-50.0)
    assert torch.allclose(learned.feature_precision(), torch.full((3,), 100.0))


def _planted_outliers() -> tuple[np.ndarray, np.ndarray, VAEConfig]:
    """400 correlated rows, 20 of them moved far from the cloud, and a small model for them."""
    rng = np.random.default_rng(0)
    x = _correlated(400)
    outliers = rng.choice(400, 20, replace=False)
    x[outliers] += rng.choice([-6.0, 6.0], size=(20, 10))  # far from the correlated cloud
    cfg = VAEConfig(n_features=10, hidden_dims=(16,), latent_dim=2, decoder_variance="learned")
    return x, outliers, cfg


def test_trimming_drops_the_most_anomalous_training_rows_and_keeps_the_rest():
    x, outliers, cfg = _planted_outliers()
    config = TrainConfig(max_epochs=30, trim_fraction=0.05, trim_epoch=15, beta=0.1)
    result = fit_vae(x, None, cfg, config)
    assert result.trimmed_rows == 20 and result.kept_rows is not None
    dropped = np.setdiff1d(np.arange(400), result.kept_rows)
    assert len(np.intersect1d(dropped, outliers)) >= 18  # the planted outliers go first
    plain = fit_vae(x, None, cfg, TrainConfig(max_epochs=30, beta=0.1))
    assert plain.trimmed_rows == 0 and plain.kept_rows is None


def test_an_early_stop_before_the_trim_epoch_trims_first():
    # patience runs out long before epoch 200: the run trims then, instead of ending untrimmed
    x, outliers, cfg = _planted_outliers()
    config = TrainConfig(
        max_epochs=400, trim_fraction=0.05, trim_epoch=200, beta=0.1, patience=2, min_delta=0.05
    )
    result = fit_vae(x, x[:100], cfg, config)
    assert result.stopped_early and len(result.history) < 200
    assert result.trimmed_rows == 20
    assert len(np.intersect1d(np.setdiff1d(np.arange(400), result.kept_rows), outliers)) >= 18


def test_a_trim_that_drops_no_row_leaves_training_exactly_as_without_trimming():
    # Given a table without far-out rows, trained with the far-out fence, weight averaging and
    # a validation set, the trim at epoch 10 drops nothing: the average does not restart and
    # the best epoch before it still counts, so every loss and weight is the untrimmed run's
    x, cfg = _correlated(300), VAEConfig(n_features=10, hidden_dims=(16,), latent_dim=2)
    base = {"max_epochs": 20, "beta": 0.1, "average_epochs": 2.0, "seed": 3}
    fence = TrainConfig(**base, trim_fraction=0.1, trim_fence=3.0, trim_epoch=10)
    trimmed = fit_vae(x[:240], x[240:], cfg, fence)
    plain = fit_vae(x[:240], x[240:], cfg, TrainConfig(**base))
    assert trimmed.trimmed_rows == 0 and len(trimmed.kept_rows) == 240
    assert [h.val_loss for h in trimmed.history] == [h.val_loss for h in plain.history]
    assert trimmed.best_epoch == plain.best_epoch
    for name, value in plain.model.state_dict().items():
        assert torch.equal(trimmed.model.state_dict()[name], value), name


def test_influence_weights_cap_each_rows_excess_over_the_median_at_the_cut():
    loss = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 50.0, 500.0])
    terms = ElboTerms(recon_per_feature=loss[:, None], recon=loss, kl=torch.zeros_like(loss))
    weights = influence_weights(terms, beta=0.1, fraction=0.2)
    assert not weights.requires_grad
    assert math.isclose(float(weights.mean()), 1.0, rel_tol=1e-6)
    median, cut = float(loss.median()), float(torch.quantile(loss, 0.8))
    relative = weights / weights[0]  # before the weights are scaled to mean 1
    below = loss <= cut
    assert torch.all(relative[below] == 1.0)  # the rows the model fits like the rest count fully
    # above the cut, each row's excess over the median counts as the cut's excess: bounded
    excess = relative[~below] * (loss[~below] - median)
    np.testing.assert_allclose(excess.numpy(), cut - median, rtol=1e-5)
    assert relative[-1] < relative[-2] < 1.0  # the further out, the less weight


def test_bounded_influence_keeps_planted_outliers_far_from_what_the_model_learns():
    x, outliers, cfg = _planted_outliers()

    def outlier_rank_share(fraction: float) -> float:
        config = TrainConfig(max_epochs=30, beta=0.1, downweight_fraction=fraction)
        terms = score_arrays(fit_vae(x, None, cfg, config).model, x)
        top = np.argsort(-(terms.recon + 0.1 * terms.kl))[:20]
        return len(np.intersect1d(top, outliers)) / 20

    # every planted outlier is among the 20 worst-fitted rows with the weights, as without
    assert outlier_rank_share(0.1) >= outlier_rank_share(0.0) and outlier_rank_share(0.1) >= 0.95


def test_feature_loss_marks_the_features_outside_its_one_hot_blocks_as_gaussian():
    # Given a loss that scores two one-hot blocks by their likelihood, then exactly the other
    # features are scored by their squared error
    mask = FeatureLoss([(2, 4), (5, 8)]).gaussian_features(9)
    assert mask.tolist() == [True, True, False, False, True, False, False, False, True]
    assert FeatureLoss().gaussian_features(3).all()


def test_feature_loss_keeps_its_own_copy_of_the_blocks():
    # Given a list of blocks, when the caller changes it afterwards, then the loss does not
    blocks = [(0, 2)]
    loss = FeatureLoss(blocks)
    blocks.append((2, 4))
    assert loss.categories == ((0, 2),)


def test_the_weight_average_follows_its_recurrence_and_restarts_from_the_model():
    # Given a model whose weights are set to k after step k, when the average is updated,
    # then it follows a_k = d_k a_(k-1) + (1 - d_k) k with d_k = min(cap, (1 + k) / (10 + k)),
    # cap = 1 - 1 / (epochs * steps per epoch) (to float32 rounding: the expected value is
    # computed by another kernel); a restart copies the model's weights and resets the cap
    model = VAE(VAEConfig(n_features=3, hidden_dims=(4,), latent_dim=2))
    average = _WeightAverage(model, epochs=0.4, steps_per_epoch=5)

    def run(steps: int, steps_per_epoch: int) -> float:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
        average.restart(steps_per_epoch)
        expected = 0.0
        for k in range(1, steps + 1):
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float(k))
            average.update()
            decay = min(average.decay, (1 + k) / (10 + k))
            expected = decay * expected + (1 - decay) * k
        for p in average.model.parameters():
            torch.testing.assert_close(p, torch.full_like(p, expected), rtol=1e-6, atol=0)
        return expected

    # 0.4 epochs of 5 steps: cap 0.5 (reached at step 8), the average lags the iterate 1 step
    assert abs(run(30, 5) - 29.0) < 1e-3 and average.decay == 0.5
    # 0.4 epochs of 10 steps: cap 0.75, a lag of 3 steps
    assert abs(run(60, 10) - 57.0) < 1e-3 and average.decay == 0.75
    average.restart(5)
    for p, q in zip(average.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_window_under_one_step_keeps_the_iterate():
    # Given a window shorter than one optimiser step, then the average is the iterate itself
    # (decay 0), not an overshoot that would swing around it
    model = VAE(VAEConfig(n_features=3, hidden_dims=(4,), latent_dim=2))
    average = _WeightAverage(model, epochs=0.25, steps_per_epoch=1)
    assert average.decay == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3.0)
    average.update()
    for p, q in zip(average.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_averaging_keeps_the_optimisers_path_and_smooths_the_kept_weights():
    # Given the same data and seed, when training keeps the averaged weights, then the
    # optimiser takes exactly the same steps (the training losses are bit-identical: the
    # average only reads the weights) and the weights kept are not the last iterate's
    x = _correlated(400)
    cfg = VAEConfig(n_features=10, hidden_dims=(16,), latent_dim=2)
    plain = fit_vae(x[:300], x[300:], cfg, TrainConfig(max_epochs=12, seed=5, patience=50))
    averaged = fit_vae(
        x[:300], x[300:], cfg, TrainConfig(max_epochs=12, seed=5, patience=50, average_epochs=3)
    )
    assert [h.train_loss for h in plain.history] == [h.train_loss for h in averaged.history]
    assert [h.val_loss for h in plain.history] != [h.val_loss for h in averaged.history]
    kept = dict(averaged.model.named_parameters())
    for name, last in plain.model.named_parameters():
        # every trained weight differs (the decoder log-variance is fixed here: never trained)
        assert torch.equal(last, kept[name]) == (name == "decoder_logvar"), name
    # the weights returned are the ones validated at the best epoch (exact: the same pass on
    # the same rows with the same weights)
    best = averaged.history[averaged.best_epoch - 1]
    again = _evaluate(averaged.model, as_tensor(x[300:], torch.device("cpu")), TrainConfig(), 8192)
    assert again[0] == best.val_loss
