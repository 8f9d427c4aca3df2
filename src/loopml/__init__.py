"""loopml: the machine-learning lifecycle in one pip install, with the loop closed.

>>> import loopml
>>> with loopml.start_run(run_name="try") as run:  # doctest: +SKIP
...     loopml.log_metric("acc", 0.91)

The SDK is imported on first use, so ``import loopml`` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SDK_NAMES = {
    "service", "set_tracking_uri", "set_experiment", "start_run", "end_run", "active_run",
    "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags",
    "log_artifact", "log_artifacts", "log_text", "log_dict", "log_input", "get_run",
    "search_runs", "compare_runs", "ActiveRun", "reset", "log_figure", "log_image", "log_table",
}  # fmt: skip
_PIPELINE_NAMES = {"step", "pipeline"}
_AUTOLOG_NAMES = {"autolog"}
__all__ = sorted(_SDK_NAMES | _PIPELINE_NAMES | _AUTOLOG_NAMES)


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        return getattr(importlib.import_module("loopml.sdk"), name)
    if name in _PIPELINE_NAMES:
        return getattr(importlib.import_module("loopml.pipelines"), name)
    if name in _AUTOLOG_NAMES:
        return getattr(importlib.import_module("loopml.tracking.autolog"), name)
    raise AttributeError(f"module 'loopml' has no attribute {name!r}")
