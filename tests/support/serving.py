"""Serving test helpers: small registered models and a live ``loopml serve`` subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.support.live_server import free_port, loopml_process


@dataclass(frozen=True)
class Trained:
    """Registered models and the local objects to compare predictions with."""

    X: np.ndarray[Any, Any]
    frame: pd.DataFrame
    tensor_model: Any  # LogisticRegression on a (n, 20) float64 array: models:/lr@champion
    table_model: Any  # LogisticRegression on a DataFrame (a float, b int): models:/tab@champion


def train_and_register(home: Path) -> Trained:
    """Log and register two models under ``home`` (call with LOOPML_HOME=home set)."""
    from sklearn.linear_model import LogisticRegression

    import loopml
    from loopml import models, registry, sdk

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 20))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.integers(0, 5, size=200)})
    yt = (frame["a"] + frame["b"] > 2).astype(np.int64)
    tensor_model = LogisticRegression().fit(X, y)
    table_model = LogisticRegression().fit(frame, yt)
    with loopml.start_run():
        lr = models.log_model(tensor_model, "lr", input_example=X[:5])
        tab = models.log_model(table_model, "tab", input_example=frame.head())
    for name, info in (("lr", lr), ("tab", tab)):
        mv = registry.register(name, info.model_uri)
        registry.service().set_registered_model_alias(name, "champion", mv.version)
    registry.reset()
    sdk.reset()
    return Trained(X, frame, tensor_model, table_model)


@contextmanager
def serve_process(home: Path, uri: str, *args: str) -> Iterator[str]:
    """``loopml serve URI`` on a free port with ``LOOPML_HOME=home``; yields ``127.0.0.1:PORT``."""
    port = free_port()
    argv = ["serve", uri, "--port", str(port), *args]
    with loopml_process(home, argv, port=port, ready_path="/ping", what="loopml serve") as url:
        yield url.removeprefix("http://")
