"""Log the benchmark's fitted models with MLflow (run with the MLflow venv's python).

``python _setup_mlflow.py WORK``: loads ``WORK/NAME.joblib`` (the same fitted objects loopml
logged), logs each with ``mlflow.sklearn.log_model`` into ``$MLFLOW_TRACKING_URI`` with a
NumPy input example (a tensor signature, like loopml's), and prints ``{model: URI}`` as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import joblib
import mlflow
import numpy as np


def main(work: Path) -> None:
    example = np.random.default_rng(0).normal(size=(3, 20))
    uris = {}
    with mlflow.start_run(run_name="serving-bench"):
        for name in ("logreg", "forest"):
            model = joblib.load(work / f"{name}.joblib")
            # MLflow 3 stores sklearn models with skops; trees need their node type trusted.
            trusted = ["sklearn.tree._tree.Tree"] if name == "forest" else None
            info = mlflow.sklearn.log_model(
                model, name=name, input_example=example, skops_trusted_types=trusted
            )
            uris[name] = info.model_uri
    print(json.dumps(uris))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
