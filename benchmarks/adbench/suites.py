"""The two suites run by the same harness: ADBench (``--data``: 33 numeric ``.npz`` sets) and
the categorical tables (``--categorical``: ``.csv`` of text columns plus ``label``). A suite
says where its data is and how it is read, how a split is made, which detectors apply, its
product targets and the texts of its report; its results go to ``<name>_*`` files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.adbench.data import (
    QUICK,
    QUICK_CATEGORICAL,
    Split,
    list_datasets,
    load_dataset,
    load_table,
    make_split,
)
from benchmarks.adbench.detectors import BASELINES, CATEGORICAL_ONLY, Kind, applicable
from benchmarks.adbench.report import TargetRules

_PYOD = "`VAE(random_state=seed, verbose=0)`, `IForest(random_state=seed)`, `ECOD()`"
_CACHED = "cached results keep the timings measured when they were computed"


@dataclass(frozen=True)
class Suite:
    name: str  # the results' file prefix: <name>_per_split.csv, <name>.md, ...
    label: str  # how tables and plots name it
    kind: Kind
    data_dir: Path
    extension: str
    quick: tuple[str, ...]
    rules: TargetRules
    title: str
    protocol: str
    baselines: str
    vae_input: str = ""  # how vae-anomaly is fed, when it is not the ADBench way

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(applicable(BASELINES, self.kind))

    def list_datasets(self) -> list[str]:
        return list_datasets(self.data_dir, self.extension)

    def load(self, stem: str) -> tuple[Any, np.ndarray]:
        if self.kind == "numeric":
            return load_dataset(self.data_dir, stem)
        return load_table(self.data_dir, stem)

    def split(self, stem: str, x: Any, y: np.ndarray, seed: int) -> Split:
        return make_split(stem, x, y, seed, scale=self.kind == "numeric")

    def detectors(self, names: Sequence[str]) -> list[str]:
        return applicable(names, self.kind)


def adbench_suite(data_dir: Path) -> Suite:
    return Suite(
        name="adbench",
        label="ADBench",
        kind="numeric",
        data_dir=data_dir,
        extension="npz",
        quick=QUICK,
        rules=TargetRules(roc_over_best_peer=1.0, pr_over_best_peer=2.0, roc_over_pyod_vae=3.0),
        title="ADBench detection quality (unsupervised protocol)",
        protocol="<1,000 rows resampled up to 1,000, >10,000 subsampled to 10,000, "
        "stratified 70/30 split, MinMaxScaler fitted on train, unsupervised fit on the "
        "contaminated train part",
        baselines=f"PyOD defaults ({_PYOD}); {_CACHED}",
    )


def categorical_suite(data_dir: Path) -> Suite:
    only = ", ".join(CATEGORICAL_ONLY)
    return Suite(
        name="categorical",
        label="categorical",
        kind="categorical",
        data_dir=data_dir,
        extension="csv",
        quick=QUICK_CATEGORICAL,
        rules=TargetRules(roc_over_best_peer=2.0, pr_over_best_peer=2.0),
        title="Categorical detection quality (ADBench unsupervised protocol, tables of text)",
        protocol="every column read as text (an empty cell is missing), `label` the label; "
        "<1,000 rows resampled up to 1,000, >10,000 subsampled to 10,000, stratified 70/30 "
        "split, unsupervised fit on the contaminated train part",
        baselines=f"{only}: attribute value frequency (Koufakou et al. 2007; minus the mean "
        "log frequency in the train part, an unseen value 1/(n+1), missing a value of its "
        f"own); PyOD defaults ({_PYOD}) on a one-hot encoding fitted on the train part "
        "(`OneHotEncoder(handle_unknown='ignore')`, dense float, missing a category of its "
        f"own; untimed); {_CACHED}",
        vae_input="each split as a DataFrame of text columns, every column declared "
        "categorical (`data.categorical_columns`, on top of the settings below)",
    )
