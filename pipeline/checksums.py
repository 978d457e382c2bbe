"""sha256 manifests of model files, written at save time and verified at load time."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

CHECKSUM_FILE = "checksums.json"


class ChecksumError(RuntimeError):
    """A model file is missing or differs from the checksum recorded when it was saved."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(directory: Path) -> dict[str, str]:
    """Record the sha256 of every file in ``directory`` (but the manifest itself)."""
    sums = {
        p.name: sha256_file(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != CHECKSUM_FILE
    }
    (directory / CHECKSUM_FILE).write_text(json.dumps(sums, indent=1, sort_keys=True))
    return sums


def verify_checksums(directory: Path, required: Iterable[str] = ()) -> None:
    """Raise :class:`ChecksumError` naming the first file that is missing or altered, or a
    ``required`` file that the manifest does not list (a manifest edited along with the files
    it vouches for must not make them trusted)."""
    manifest = directory / CHECKSUM_FILE
    if not manifest.is_file():
        raise ChecksumError(
            f"{directory}: no {CHECKSUM_FILE}; refusing to load an unverified model"
        )
    try:
        expected = json.loads(manifest.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChecksumError(f"{directory}: {CHECKSUM_FILE} is not a valid manifest") from exc
    if not isinstance(expected, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in expected.items()
    ):
        raise ChecksumError(f"{directory}: {CHECKSUM_FILE} is not a valid manifest")
    unlisted = sorted(set(required) - set(expected))
    if unlisted:
        raise ChecksumError(
            f"{CHECKSUM_FILE} in {directory} does not list the model file(s) {unlisted}; "
            "refusing to load an unverified model"
        )
    for name, digest in sorted(expected.items()):
        path = directory / name
        if not path.is_file():
            raise ChecksumError(f"model file {name!r} is missing from {directory}")
        actual = sha256_file(path)
        if actual != digest:
            raise ChecksumError(
                f"model file {name!r} in {directory} does not match its recorded sha256 "
                f"(expected {digest[:12]}..., found {actual[:12]}...): the artifact was altered; "
                "refusing to load it"
            )
