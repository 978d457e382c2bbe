"""The datasets of both suites (ADBench ``.npz`` arrays, categorical ``.csv`` tables of text),
the halves of a list and the protocol's splits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

SEEDS = (1, 2, 3)
MIN_ROWS, MAX_ROWS = 1_000, 10_000
TEST_SIZE = 0.3
QUICK = ("4_breastw", "6_cardio", "14_glass", "29_Pima", "38_thyroid", "44_Wilt")
# resampled up to 1,000 rows, kept whole, subsampled to 10,000: every path of the protocol
QUICK_CATEGORICAL = ("cmc", "solar_flare", "u2r")
LABEL = "label"  # the label column of a categorical table (dropped from its features)

Features = Any  # a 2-d float array (ADBench) or a DataFrame of text columns (categorical)


def short_name(stem: str) -> str:
    """``"22_magic.gamma"`` -> ``"magic.gamma"`` (the ADBench number prefix dropped)."""
    prefix, sep, rest = stem.partition("_")
    return rest if sep and prefix.isdigit() else stem


def list_datasets(data_dir: Path, extension: str = "npz") -> list[str]:
    """Dataset stems in the folder, alphabetical by name (case-insensitive, prefix dropped)."""
    stems = [p.stem for p in data_dir.glob(f"*.{extension}")]
    if not stems:
        raise SystemExit(f"no .{extension} dataset in {data_dir}")
    return sorted(stems, key=lambda s: (short_name(s).casefold(), s))


def half_of(datasets: Sequence[str], half: str) -> list[str]:
    """Two fixed halves of the alphabetical list, alternating: A = 1st, 3rd, ...; B = 2nd, ..."""
    if half == "all":
        return list(datasets)
    start = {"A": 0, "B": 1}[half]
    return list(datasets[start::2])


def _lookup(all_names: Iterable[str]) -> dict[str, str]:
    """Either name form (``6_cardio`` or ``cardio``, any case) -> the stem."""
    lookup: dict[str, str] = {}
    for stem in all_names:
        lookup[stem.casefold()] = stem
        lookup[short_name(stem).casefold()] = stem
    return lookup


def unknown_names(wanted: Sequence[str], *name_lists: Sequence[str]) -> list[str]:
    """The names of ``wanted`` that are in none of the lists (``--only`` spans the suites)."""
    lookup = _lookup(name for names in name_lists for name in names)
    return [w for w in wanted if w.casefold() not in lookup]


def select_datasets(
    all_names: Sequence[str],
    only: Sequence[str] | None,
    quick: bool,
    half: str,
    quick_names: Sequence[str] = QUICK,
    strict: bool = True,
) -> list[str]:
    """The datasets of this run, in the alphabetical order; ``--only`` accepts either name form.

    With ``strict=False`` names that are not in ``all_names`` are passed over (they belong to
    the other suite; the caller checks that every name is in one of them).
    """
    chosen = half_of(all_names, half)
    wanted = list(only) if only else (list(quick_names) if quick else None)
    if wanted is None:
        return chosen
    lookup = _lookup(all_names)
    unknown = [w for w in wanted if w.casefold() not in lookup]
    if unknown and strict:
        raise SystemExit(f"unknown dataset(s) {unknown}; known: {', '.join(all_names)}")
    keep = {lookup[w.casefold()] for w in wanted if w.casefold() in lookup}
    return [s for s in chosen if s in keep]


def load_dataset(data_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """An ADBench ``.npz``: ``X`` as float64, ``y`` (1 = anomaly)."""
    with np.load(data_dir / f"{stem}.npz", allow_pickle=False) as data:
        x = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"]).astype(np.int64).ravel()
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{stem}: X {x.shape} and y {y.shape} do not match")
    return x, y


def load_table(data_dir: Path, stem: str) -> tuple[pd.DataFrame, np.ndarray]:
    """A categorical ``.csv``: every column read as text, empty cells (ARFF's ``?``) as missing
    (NaN); ``label`` (1 = anomaly) split off the features."""
    frame = pd.read_csv(data_dir / f"{stem}.csv", dtype=str, keep_default_na=False)
    if LABEL not in frame.columns:
        raise ValueError(f"{stem}: no {LABEL!r} column")
    labels = frame.pop(LABEL).str.strip()
    if not labels.isin(["0", "1"]).all():
        raise ValueError(f"{stem}: {LABEL!r} holds values other than 0 and 1")
    if frame.shape[1] == 0:
        raise ValueError(f"{stem}: no feature column")
    return frame.mask(frame == ""), labels.astype(np.int64).to_numpy()


@dataclass(frozen=True)
class Split:
    """One (dataset, seed) split: arrays min-max scaled with training statistics (ADBench), or
    DataFrames of text as read (categorical)."""

    dataset: str
    seed: int
    n_rows: int  # rows of the original dataset
    x_train: Features
    x_test: Features
    y_test: np.ndarray
    fingerprint: str  # sha1 of the data: a cached result is only reused for the same split

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def _fingerprint(x_train: Features, x_test: Features, y_test: np.ndarray) -> str:
    digest = hashlib.sha1()
    for part in (x_train, x_test):
        if isinstance(part, pd.DataFrame):
            digest.update("\x1f".join(map(str, part.columns)).encode())
            hashes = pd.util.hash_pandas_object(part, index=False).to_numpy()
            digest.update(np.ascontiguousarray(hashes).tobytes())
        else:
            digest.update(part.tobytes())
    digest.update(np.ascontiguousarray(y_test).tobytes())
    return digest.hexdigest()[:16]


def make_split(dataset: str, x: Features, y: np.ndarray, seed: int, scale: bool = True) -> Split:
    """Steps 1-3 of the protocol: resample / subsample, stratified split and (``scale``, the
    ADBench arrays) min-max scaling fitted on the train part. ``x``: an array or a DataFrame."""
    rng = np.random.RandomState(seed)
    n = len(y)
    if n < MIN_ROWS:
        rows = rng.choice(n, MIN_ROWS, replace=True)
    elif n > MAX_ROWS:
        rows = rng.choice(n, MAX_ROWS, replace=False)
    else:
        rows = np.arange(n)
    is_frame = isinstance(x, pd.DataFrame)
    xs = x.iloc[rows].reset_index(drop=True) if is_frame else x[rows]
    ys = y[rows]
    x_train, x_test, _, y_test = train_test_split(
        xs, ys, test_size=TEST_SIZE, stratify=ys, shuffle=True, random_state=seed
    )
    if scale:
        scaler = MinMaxScaler().fit(x_train)
        x_train = np.ascontiguousarray(scaler.transform(x_train))
        x_test = np.ascontiguousarray(scaler.transform(x_test))
    elif is_frame:
        x_train, x_test = x_train.reset_index(drop=True), x_test.reset_index(drop=True)
    y_test = np.asarray(y_test)
    fingerprint = _fingerprint(x_train, x_test, y_test)
    return Split(dataset, seed, n, x_train, x_test, y_test, fingerprint)
