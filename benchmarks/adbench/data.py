"""The datasets (``.npz``), the halves of the list and the ADBench protocol's splits."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler

SEEDS = (1, 2, 3)
MIN_ROWS, MAX_ROWS = 1_000, 10_000
TEST_SIZE = 0.3
QUICK = ("4_breastw", "6_cardio", "14_glass", "29_Pima", "38_thyroid", "44_Wilt")


def short_name(stem: str) -> str:
    """``"22_magic.gamma"`` -> ``"magic.gamma"`` (the ADBench number prefix dropped)."""
    prefix, sep, rest = stem.partition("_")
    return rest if sep and prefix.isdigit() else stem


def list_datasets(data_dir: Path) -> list[str]:
    """Dataset stems in the folder, alphabetical by name (case-insensitive, prefix dropped)."""
    stems = [p.stem for p in data_dir.glob("*.npz")]
    if not stems:
        raise SystemExit(f"no .npz dataset in {data_dir}")
    return sorted(stems, key=lambda s: (short_name(s).casefold(), s))


def half_of(datasets: Sequence[str], half: str) -> list[str]:
    """Two fixed halves of the alphabetical list, alternating: A = 1st, 3rd, ...; B = 2nd, ..."""
    if half == "all":
        return list(datasets)
    start = {"A": 0, "B": 1}[half]
    return list(datasets[start::2])


def select_datasets(
    all_names: Sequence[str], only: Sequence[str] | None, quick: bool, half: str
) -> list[str]:
    """The datasets of this run, in the alphabetical order; ``--only`` accepts either name form."""
    chosen = half_of(all_names, half)
    wanted = list(only) if only else (list(QUICK) if quick else None)
    if wanted is None:
        return chosen
    lookup: dict[str, str] = {}
    for stem in all_names:
        lookup[stem.casefold()] = stem
        lookup[short_name(stem).casefold()] = stem
    unknown = [w for w in wanted if w.casefold() not in lookup]
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; known: {', '.join(all_names)}")
    keep = {lookup[w.casefold()] for w in wanted}
    return [s for s in chosen if s in keep]


def load_dataset(data_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir / f"{stem}.npz", allow_pickle=False) as data:
        x = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"]).astype(np.int64).ravel()
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"{stem}: X {x.shape} and y {y.shape} do not match")
    return x, y


@dataclass(frozen=True)
class Split:
    """One (dataset, seed) split, min-max scaled with training statistics."""

    dataset: str
    seed: int
    n_rows: int  # rows of the original dataset
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    fingerprint: str  # sha1 of the arrays: a cached result is only reused for the same split

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def make_split(dataset: str, x: np.ndarray, y: np.ndarray, seed: int) -> Split:
    """Steps 1-3 of the ADBench protocol (resample / subsample, stratified split, min-max)."""
    rng = np.random.RandomState(seed)
    n = len(y)
    if n < MIN_ROWS:
        rows = rng.choice(n, MIN_ROWS, replace=True)
    elif n > MAX_ROWS:
        rows = rng.choice(n, MAX_ROWS, replace=False)
    else:
        rows = np.arange(n)
    xs, ys = x[rows], y[rows]
    x_train, x_test, _, y_test = train_test_split(
        xs, ys, test_size=TEST_SIZE, stratify=ys, shuffle=True, random_state=seed
    )
    scaler = MinMaxScaler().fit(x_train)
    x_train = np.ascontiguousarray(scaler.transform(x_train))
    x_test = np.ascontiguousarray(scaler.transform(x_test))
    digest = hashlib.sha1()
    for part in (x_train, x_test, np.ascontiguousarray(y_test)):
        digest.update(part.tobytes())
    return Split(dataset, seed, n, x_train, x_test, np.asarray(y_test), digest.hexdigest()[:16])
