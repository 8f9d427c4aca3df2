"""Model packaging: flavors, signatures, safe serialisation and loading by URI.

>>> import loopml, loopml.models
>>> with loopml.start_run():                                                # doctest: +SKIP
...     info = loopml.models.log_model(pipeline, input_example=X[:5])
>>> loopml.models.load(info.model_uri).predict(X)                          # doctest: +SKIP

Importing this package loads neither the tracking stack nor any model library:
each is imported when first used.
"""

from __future__ import annotations

from loopml.models.api import LoadedModel, ModelInfo, load, log_model
from loopml.models.manifest import MANIFEST_NAME, Manifest
from loopml.models.signature import Column, Schema, Signature
from loopml.models.uris import RESOLVERS, ArtifactSource, parse_source, resolve

__all__ = [
    "MANIFEST_NAME",
    "RESOLVERS",
    "ArtifactSource",
    "Column",
    "LoadedModel",
    "Manifest",
    "ModelInfo",
    "Schema",
    "Signature",
    "load",
    "log_model",
    "parse_source",
    "resolve",
]
