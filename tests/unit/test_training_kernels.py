"""The training loop's fast paths compute what the slow ones compute, bit for bit."""

import numpy as np
import pytest
import torch

import vae.loss
import vae.train
from vae import TrainConfig, VAEConfig, fit_vae
from vae.loss import _median_and_quantile
from vae.model import VAE
from vae.optim import Adam


class _TorchAdam:
    """torch's own fused Adam behind the interface of :class:`vae.optim.Adam`."""

    def __init__(self, params, lr, weight_decay):
        self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)

    def zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)

    def step(self):
        self.optimizer.step()


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("variance", ["learned", "fixed"])
def test_adam_takes_torchs_fused_adam_steps_bit_for_bit(weight_decay, variance):
    x = torch.from_numpy(np.random.default_rng(0).random((64, 7)).astype(np.float32))
    models = []
    for optimiser in (Adam, _TorchAdam):
        torch.manual_seed(3)
        model = VAE(
            VAEConfig(n_features=7, hidden_dims=(16, 8), latent_dim=2, decoder_variance=variance)
        )
        opt = optimiser(model.parameters(), 1e-2, weight_decay)
        for step in range(25):
            opt.zero_grad()
            out = model(x, sample=False)
            loss = (x - out.recon).pow(2).sum(dim=1).mean()
            if step % 5 != 4:  # every fifth step the encoder's log-variance head gets no gradient
                loss = loss + out.logvar.pow(2).mean()
            loss.backward()
            opt.step()
        models.append(model)
    assert torch.equal(_weights(models[0]), _weights(models[1]))
    assert not torch.equal(_weights(models[0]), _weights(VAE(models[0].config)))  # it moved


def test_adam_leaves_frozen_parameters_alone():
    model = VAE(VAEConfig(n_features=3, hidden_dims=(4,), latent_dim=1, decoder_variance="fixed"))
    before = model.decoder_logvar.detach().clone()
    opt = Adam(model.parameters(), 0.1, 0.0)
    assert all(p is not model.decoder_logvar for p in opt.params)
    model(torch.ones(2, 3), sample=False).recon.sum().backward()
    opt.step()
    assert torch.equal(model.decoder_logvar, before)


def test_median_and_quantile_from_one_sort_are_torchs():
    g = torch.Generator().manual_seed(0)
    for n in [1, 2, 3, 7, 8, 255, 256, 257]:
        for q in (0.5, 0.8, 0.9, 0.95, 0.99):
            for ties in (False, True):
                v = torch.rand(n, generator=g) * torch.exp(3 * torch.randn(n, generator=g))
                if ties:
                    v = torch.round(4 * v)
                median, cut = _median_and_quantile(v, q)
                assert torch.equal(median, v.median())
                expected = torch.quantile(v, q)
                assert cut.shape == expected.shape and torch.equal(cut, expected)
    with_nan = torch.tensor([1.0, float("nan"), 2.0])
    assert all(torch.isnan(t) for t in _median_and_quantile(with_nan, 0.9))


def test_a_fit_with_the_fast_paths_is_the_fit_with_torchs_functions(monkeypatch):
    # a table of 0/1 features with bounded influence and weight averaging: every fast path
    rng = np.random.default_rng(1)
    x = (rng.random((300, 12)) < 0.3).astype(np.float32)
    config = VAEConfig(
        n_features=12, hidden_dims=(24, 12), latent_dim=3, decoder_variance="learned"
    )
    train = TrainConfig(
        max_epochs=6,
        batch_size=64,
        beta=0.5,
        downweight_fraction=0.1,
        downweight_epoch=2,
        average_epochs=2.0,
        trim_fraction=0.1,
        trim_fence=3.0,
        trim_epoch=3,
        seed=5,
    )
    fast = fit_vae(x[:240], x[240:], config, train)
    monkeypatch.setattr(vae.train, "Adam", _TorchAdam)
    monkeypatch.setattr(
        vae.loss, "_median_and_quantile", lambda v, q: (v.median(), torch.quantile(v, q))
    )
    slow = fit_vae(x[:240], x[240:], config, train)
    assert torch.equal(_weights(fast.model), _weights(slow.model))
    assert [e.val_loss for e in fast.history] == [e.val_loss for e in slow.history]


@pytest.mark.parametrize("average_epochs", [0.0, 2.0])
@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_the_weights_kept_are_those_of_the_best_epoch(average_epochs, dropout):
    # the best epoch's weights are copied in place and module modes are switched only with
    # dropout: a fit that stops early ends with the weights of the same fit cut at its best epoch
    rng = np.random.default_rng(2)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    x[:, 3:] = x[:, :3] + 0.1 * x[:, 3:]
    config = VAEConfig(n_features=6, hidden_dims=(12,), latent_dim=2, dropout=dropout)
    train = dict(learning_rate=5e-2, batch_size=32, seed=3, average_epochs=average_epochs)
    long = fit_vae(x[:180], x[180:], config, TrainConfig(max_epochs=60, patience=3, **train))
    assert long.stopped_early and long.best_epoch < len(long.history)
    cut = fit_vae(
        x[:180], x[180:], config, TrainConfig(max_epochs=long.best_epoch, patience=99, **train)
    )
    assert cut.best_epoch == long.best_epoch
    assert torch.equal(_weights(long.model), _weights(cut.model))
    assert not long.model.training  # handed back ready to score
    torch.manual_seed(3)  # the fit's own seeding: the weights it started from
    assert not torch.equal(_weights(long.model), _weights(VAE(config)))
    # the validation loss that chose the best epoch is that of the weights handed back,
    # evaluated deterministically (dropout off)
    val_loss = vae.train._evaluate(
        long.model, torch.from_numpy(x[180:]), TrainConfig(**train), 8192
    )[0]
    assert val_loss == long.history[long.best_epoch - 1].val_loss
