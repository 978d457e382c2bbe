"""The benchmark report's fit-time target compares times taken on one machine only."""

import pandas as pd

from benchmarks.adbench.report import TargetRules, evaluate_targets, summarise, timing_machines


def _per_split(vae_machine: str, pyod_machine: str) -> pd.DataFrame:
    rows = [
        {
            "dataset": d,
            "seed": s,
            "detector": det,
            "model_seed": 42 if det == "vae-anomaly" else None,
        }
        | {"roc_auc": 0.8, "pr_auc": 0.4, "fit_s": fit, "score_s": 0.1, "error": ""}
        | {"timed_on": machine}
        for d in ("a", "b")
        for s in (1, 2)
        for det, fit, machine in (
            ("vae-anomaly", 1.0, vae_machine),
            ("pyod-vae", 10.0, pyod_machine),
        )
    ]
    return pd.DataFrame(rows)


def _fit_time_target(per_split: pd.DataFrame):
    summary = summarise(per_split, ["vae-anomaly", "pyod-vae"])
    rules = TargetRules(roc_over_best_peer=1, pr_over_best_peer=2)
    targets = evaluate_targets(summary, rules, timing_machines(per_split))
    return next(t for t in targets if t.unit == "s")


def test_fit_times_from_one_machine_are_compared():
    target = _fit_time_target(_per_split("AMD EPYC, 2 CPU(s)", "AMD EPYC, 2 CPU(s)"))
    assert (target.value, target.needed, target.met) == (4.0, 8.0, True)


def test_fit_times_from_two_machines_are_not_compared():
    # a cached baseline timed on another machine: the ratio says nothing, the target is n/a
    target = _fit_time_target(_per_split("AMD EPYC, 2 CPU(s)", "Intel Xeon, 2 CPU(s)"))
    assert (target.value, target.needed, target.met) == (4.0, 8.0, None)
    assert (
        "pyod-vae timed on Intel Xeon" in target.text and "vae-anomaly on AMD EPYC" in target.text
    )
