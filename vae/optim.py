"""The optimiser of :func:`vae.train.fit_vae`: Adam's fused kernel without the per-step
bookkeeping of ``torch.optim``."""

from __future__ import annotations

from collections.abc import Iterable

import torch


class Adam:
    """Adam, the update of ``torch.optim.Adam(fused=True)`` bit for bit, in one kernel call.

    ``torch.optim.Adam.step`` spends about 0.2 ms a step on Python bookkeeping (its per-step
    state lookups, grouping of the tensors by device and dtype, profiler hooks) before the
    fused kernel runs: 10-20% of a step of the small networks of most tables, whose cost is
    dispatch. This keeps the state in flat lists and calls the same kernel
    (``torch._fused_adam_``) with the same arguments, so the weights after each step are the
    same bits (``tests/unit/test_training_kernels.py`` compares them with torch's optimiser).
    Plain Adam only: L2 ``weight_decay`` as torch's Adam adds it, no amsgrad, no maximize.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, params: Iterable[torch.Tensor], lr: float, weight_decay: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay = lr, weight_decay
        self.exp_avg = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        self.exp_avg_sq = [
            torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params
        ]
        # the step counts, float32 scalars as torch's fused Adam keeps them, here views of one
        # vector: a step where every parameter has a gradient counts them all in one add (a
        # foreach add over a dozen scalars costs about 40 us on CPU, a thirtieth of a step)
        device = self.params[0].device if self.params else None
        self._counts = torch.zeros(len(self.params), dtype=torch.float32, device=device)
        self.steps = list(self._counts.unbind())

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params, exp_avg, exp_avg_sq, steps = self.params, self.exp_avg, self.exp_avg_sq, self.steps
        every = len(live) == len(params)
        if not every:  # parameters without a gradient are left as they are, as torch's Adam does
            params, exp_avg, exp_avg_sq, steps = (
                [values[i] for i in live] for values in (params, exp_avg, exp_avg_sq, steps)
            )
        grads = [p.grad for p in params if p.grad is not None]
        with torch.no_grad():
            if every:
                self._counts.add_(1)
            else:
                torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                params,
                grads,
                exp_avg,
                exp_avg_sq,
                [],
                steps,
                amsgrad=False,
                lr=self.lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=self.weight_decay,
                eps=self.eps,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
