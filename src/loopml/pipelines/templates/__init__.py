"""Ready-made pipelines: continuous training, and the synthetic data the demo runs on.

>>> from loopml.pipelines.templates import CTConfig, continuous_training
>>> ct = continuous_training(CTConfig("fraud", "transactions", "is_fraud"))
>>> [s for s in ("ingest", "train", "decide") if callable(getattr(ct, s))]
['ingest', 'train', 'decide']
"""

from __future__ import annotations

from loopml.pipelines.templates.continuous import STAGES, ContinuousTraining, continuous_training
from loopml.pipelines.templates.records import (
    Candidate,
    CTConfig,
    CTResult,
    Decision,
    GateOutcome,
    Ingested,
    LiveTraffic,
    ModelData,
    Validation,
)
from loopml.pipelines.templates.synthetic import card_transactions

__all__ = [
    "STAGES",
    "CTConfig",
    "CTResult",
    "Candidate",
    "ContinuousTraining",
    "Decision",
    "GateOutcome",
    "Ingested",
    "LiveTraffic",
    "ModelData",
    "Validation",
    "card_transactions",
    "continuous_training",
]
