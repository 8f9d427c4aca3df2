"""The model manifest: one JSON file naming every file of a model with its sha256.

The manifest is what loading trusts: each file is checked against its digest
before any byte of it is deserialised, and the manifest itself can be checked
against the digest ``log_model`` returned (and recorded on the run).

>>> m = Manifest(flavor="sklearn", loader="skops", files={"model.skops": "ab" * 32})
>>> Manifest.from_bytes(m.to_bytes()).files
{'model.skops': 'abababababababababababababababababababababababababababababababab'}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loopml.errors import IntegrityError, InvalidInput
from loopml.store.paths import safe_relpath

MANIFEST_NAME = "loopml-model.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass(slots=True)
class Manifest:
    """What a model directory holds and how to load it.

    ``loader`` is the serialisation format (``skops``, ``cloudpickle``, ``xgboost-ubj``,
    ``lightgbm-text``, ``onnx``); ``options`` are the flavor's own settings (which file,
    which wrapper class); ``requirements`` maps a distribution to its exact version.
    """

    flavor: str
    loader: str
    files: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] | None = None
    requirements: dict[str, str] = field(default_factory=dict)
    pip_requirements: list[str] = field(default_factory=list)
    python_version: str = ""
    model_class: str = ""
    input_example: str | None = None
    format_version: int = FORMAT_VERSION
    # The feature service the model was trained with (name, version, join keys, request fields,
    # feature columns): an endpoint then accepts entity keys alone and fetches the features.
    feature_service: dict[str, Any] | None = None

    def to_bytes(self) -> bytes:
        # Sorted keys and fixed separators: the same model gives the same manifest digest.
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, where: str = "model") -> Manifest:
        """Parse and check a manifest; anything malformed is an ``IntegrityError``."""
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise _corrupt(where, f"it is not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise _corrupt(where, "it is not a JSON object")
        if raw.get("format_version") != FORMAT_VERSION:
            raise InvalidInput(
                f"{where} has manifest format {raw.get('format_version')!r}; this loopml reads "
                f"format {FORMAT_VERSION}: upgrade loopml to load it",
                details={"field": "format_version"},
            )
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        try:
            manifest = cls(**known)
        except TypeError as exc:
            raise _corrupt(where, str(exc)) from None
        manifest._check(where)
        return manifest

    def _check(self, where: str) -> None:
        if not isinstance(self.files, Mapping) or not self.files:
            raise _corrupt(where, "it lists no files")
        for name, digest in self.files.items():
            # A manifest names files inside the model directory only: no '..', no absolute path.
            safe_relpath(str(name), field="file")
            if name == MANIFEST_NAME or not isinstance(digest, str) or not _DIGEST.match(digest):
                raise _corrupt(where, f"its entry for {name!r} is not a sha256 digest")
        for key in ("flavor", "loader"):
            if not isinstance(getattr(self, key), str):
                raise _corrupt(where, f"its {key} is not a string")


def build_files(root: Path) -> dict[str, str]:
    """``{relative posix path: sha256}`` for every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


def tree_digest(files: Mapping[str, str]) -> str:
    """One sha256 over ``{relative path: sha256}`` (the digest the registry records for a model
    directory without a loopml manifest): the same files give the same digest."""
    hasher = hashlib.sha256()
    for name in sorted(files):
        hasher.update(f"{name}\0{files[name]}\n".encode())
    return hasher.hexdigest()


def verify_files(root: Path, files: Mapping[str, str], *, where: str) -> None:
    """Raise ``IntegrityError`` naming the first file under ``root`` whose sha256 differs."""
    for name, expected in files.items():
        path = root / name
        if not path.is_file():
            raise IntegrityError(
                f"{where}: file {name!r} listed in the manifest is missing; log the model again",
                details={"file": name},
            )
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"{where}: file {name!r} has sha256 {actual} but the manifest says {expected}; "
                "the artifact was altered: do not load it, log the model again from a trusted source",
                details={"file": name, "expected": expected, "actual": actual},
            )


def _corrupt(where: str, why: str) -> IntegrityError:
    return IntegrityError(
        f"{where}: {MANIFEST_NAME} is unreadable: {why}; log the model again",
        details={"file": MANIFEST_NAME},
    )
