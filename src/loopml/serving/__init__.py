"""Model serving: endpoints, protocols (Open Inference Protocol v2, MLflow ``/invocations``),
validation, micro-batching, deployments, prediction log, batch and stream inference.

>>> from loopml.serving import TrafficPolicy
>>> TrafficPolicy.single("churn@champion").primary.model_uri
'models:/churn@champion'

Importing this package loads no model library, web framework or database driver.
"""

from __future__ import annotations

from loopml.serving.records import (
    BatchingConfig,
    DeploymentEvent,
    Endpoint,
    RollbackPolicy,
    TrafficPolicy,
    Variant,
)
from loopml.serving.service import EndpointService

__all__ = [
    "BatchingConfig",
    "DeploymentEvent",
    "Endpoint",
    "EndpointService",
    "RollbackPolicy",
    "TrafficPolicy",
    "Variant",
]
