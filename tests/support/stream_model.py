"""A small logged scikit-learn model for the streaming tests, and messages for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml import sdk

FEATURES = ("tenure", "charges", "plan")


def training_frame(n: int = 200, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """Two numbers and a category, and a binary label that depends on them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n).astype("int64"),
            "charges": rng.normal(70, 20, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    label = ((frame["charges"] > 75) ^ (frame["plan"] == "pro")).to_numpy().astype(int)
    return frame, label


def log_churn_model(home: Path, register_as: str | None = None) -> str:
    """Train and log a pipeline under ``home``; return its runs:/ URI (or models:/NAME@champion)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import loopml.models
    import loopml.registry

    frame, label = training_frame()
    prep = ColumnTransformer(
        [("num", StandardScaler(), ["tenure", "charges"]), ("cat", OneHotEncoder(), ["plan"])]
    )
    model = make_pipeline(prep, LogisticRegression()).fit(frame, label)
    with sdk.start_run(run_name="train", capture_env=False):
        info = loopml.models.log_model(model, input_example=frame.head(5))
    if register_as is None:
        return info.model_uri
    mv = loopml.registry.register(register_as, info.model_uri)
    loopml.registry.service().set_registered_model_alias(register_as, "champion", mv.version)
    return f"models:/{register_as}@champion"


def messages(n: int, seed: int = 11) -> list[dict[str, Any]]:
    """``n`` message payloads as a Redis producer sends them: every value a string."""
    frame, _ = training_frame(n, seed)
    return [{k: str(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def expected_predictions(model_uri: str, payloads: list[dict[str, Any]]) -> list[int]:
    """What the model predicts locally for ``payloads`` (typed like the training frame)."""
    import loopml.models

    frame = pd.DataFrame(payloads).astype({"tenure": "int64", "charges": "float64"})
    return [int(v) for v in loopml.models.load(model_uri).predict(frame)]
