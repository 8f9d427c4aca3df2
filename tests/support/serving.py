"""Serving test helpers: small registered models and a live ``loopml serve`` subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from tests.support.live_server import free_port

START_TIMEOUT_S = 60


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
    env = {**os.environ, "LOOPML_HOME": str(home), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("LOOPML_TRACKING_URI", None)
    log_path = home.parent / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "loopml.cli", "serve", uri, "--port", str(port), *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        _wait(f"http://127.0.0.1:{port}/ping", proc, log_path)
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"loopml serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"loopml serve did not start in {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
