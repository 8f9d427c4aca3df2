"""Fit the benchmark's models once, then log them with loopml (run with loopml's venv).

``python _setup_models.py fit WORK``: fits a LogisticRegression and a 50-tree RandomForest on a
seeded 5,000 x 20 float matrix (NumPy, so the logged signature is a tensor), pickles each with
joblib (for the floor and both loggers) and writes the request bodies (``{"inputs":
[[...20 floats...]]}`` of 1 and 100 rows) with each model's expected predictions.
``python _setup_models.py log WORK``: logs each pickled model with ``loopml.models.log_model``
into ``$LOOPML_HOME`` and prints ``{model: runs:/... URI}`` as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

FEATURES = 20
ROWS = (1, 100)
MODELS = ("logreg", "forest")


def fit(work: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, FEATURES))
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0).astype(np.int64)
    models = {
        "logreg": LogisticRegression(max_iter=500),
        "forest": RandomForestClassifier(n_estimators=50, random_state=0),
    }
    requests = np.round(np.random.default_rng(1).normal(size=(max(ROWS), FEATURES)), 6)
    for rows in ROWS:
        (work / f"body-{rows}.json").write_text(json.dumps({"inputs": requests[:rows].tolist()}))
    expected = {}
    for name, model in models.items():
        model.fit(x, y)
        joblib.dump(model, work / f"{name}.joblib")
        expected[name] = {rows: model.predict(requests[:rows]).tolist() for rows in ROWS}
    (work / "expected.json").write_text(json.dumps(expected))


def log(work: Path) -> None:
    import loopml
    import loopml.models

    example = np.random.default_rng(0).normal(size=(3, FEATURES))
    uris = {}
    with loopml.start_run(run_name="serving-bench", capture_env=False):
        for name in MODELS:
            model = joblib.load(work / f"{name}.joblib")
            uris[name] = loopml.models.log_model(model, name, input_example=example).model_uri
    print(json.dumps(uris))


if __name__ == "__main__":
    {"fit": fit, "log": log}[sys.argv[1]](Path(sys.argv[2]))
