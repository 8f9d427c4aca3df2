"""Loaded model versions and per-endpoint runtimes, with zero-downtime swaps.

A :class:`LoadedVersion` is one model version ready to predict, with its signature and the
:class:`~loopml.serving.validation.InputSpec` built from it. An :class:`EndpointRuntime` is
what serves one revision of an endpoint: its versions, its traffic router and (when batching
is on) one micro-batcher per variant. An update builds a *new* runtime beside the old one and
swaps a reference; requests already running hold the old runtime and finish on the old
version, after which the old runtime's batchers drain and close.

>>> handle = load_version("models:/churn@champion")   # doctest: +SKIP
>>> handle.version, handle.predict(frame)[:3]          # doctest: +SKIP
('7', array([0, 1, 0]))
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from loopml.models.signature import Signature, is_dataframe
from loopml.serving.batching import MicroBatcher
from loopml.serving.deployments import TrafficRouter
from loopml.serving.records import BatchingConfig, Endpoint, Variant
from loopml.serving.validation import InputSpec

log = logging.getLogger("loopml.serving")
FEATURE_SERVICE_TAG = "loopml.feature_service"  # as loopml.features.service names it


@dataclass(slots=True)
class LoadedVersion:
    """One model version, loaded once: ``predict`` is the model's own predict on a validated
    input (the agreed ``Predictor`` interface: DataFrame or array in, array or DataFrame out)."""

    uri: str
    model_name: str
    version: str
    signature: Signature | None
    predict: Callable[[Any], Any]
    # True when predict waits on I/O (a model fetching its features online): run it in a thread.
    blocking: bool = False
    spec: InputSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = InputSpec(self.signature)


def load_version(uri: str, *, trust_pickle: bool = False) -> LoadedVersion:
    """Load ``uri``; a ``models:/`` alias is resolved to its version number first, so the
    endpoint keeps serving that exact version until it is updated (an alias that moves later
    does not change a running endpoint behind the operator's back)."""
    from loopml import models

    name, version, pinned, tags = _resolve(uri)
    loaded = models.load(pinned, trust_pickle=trust_pickle)
    # The input was validated against the signature already: call the model directly
    # rather than LoadedModel.predict, which would check it a second time.
    signature, predict = loaded.signature, cast(Callable[[Any], Any], loaded.predictor.predict)
    keyed_by_entity = False
    # Trained on a feature service (recorded by log_model, or by the version's registration):
    # requests carry entity keys and the features are fetched online.
    if loaded.manifest.feature_service or FEATURE_SERVICE_TAG in tags:
        # Imported here: the feature store stack (duckdb, pyarrow) loads only for such models.
        from loopml.serving.entity_keys import EntityKeyInput, tagged_service

        record = loaded.manifest.feature_service or tagged_service(tags[FEATURE_SERVICE_TAG], signature)
        keyed = EntityKeyInput(record or {}, loaded.signature)
        signature, predict, keyed_by_entity = keyed.signature, keyed.wrap(predict), True
    return LoadedVersion(uri, name, version, signature, predict, blocking=keyed_by_entity)


def _resolve(uri: str) -> tuple[str, str, str, dict[str, str]]:
    if not uri.startswith("models:/") or uri.startswith("models:/m-"):
        name = uri.rstrip("/").rsplit("/", 2)[-2] if uri.count("/") >= 2 else uri
        return name, "1", uri, {}
    from loopml import registry
    from loopml.registry.resolve import find_version

    mv = find_version(registry.service(), uri)
    return mv.name, str(mv.version), f"models:/{mv.name}/{mv.version}", dict(mv.tags)


def predict_many(predict: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """One predict call for several requests' inputs: concatenate, predict, split by rows."""
    if len(items) == 1:
        return [predict(items[0])]
    sizes = [len(x) for x in items]
    if is_dataframe(items[0]):
        import pandas as pd

        joined: Any = pd.concat(items, ignore_index=True, copy=False)
    else:
        joined = np.concatenate(items)
    result = predict(joined)
    out: list[Any] = []
    start = 0
    for n in sizes:
        out.append(result.iloc[start : start + n] if is_dataframe(result) else result[start : start + n])
        start += n
    return out


RECENT_REQUESTS = 100_000
"""Request ids remembered per endpoint for feedback (about 15 MB at the bound)."""


class RecentRequests:
    """Which variant answered each recent request id, oldest forgotten first (bounded), so
    a quality score reported later is credited to the variant that earned it.

    >>> recent = RecentRequests(limit=1)
    >>> recent.add("a", Variant("primary", "m/1")); recent.add("b", Variant("primary", "m/1"))
    >>> recent.get("a") is None, recent.get("b").name
    (True, 'primary')
    """

    def __init__(self, limit: int = RECENT_REQUESTS) -> None:
        self.limit = limit
        self._served: OrderedDict[str, Variant] = OrderedDict()

    def add(self, request_id: str, variant: Variant) -> None:
        self._served[request_id] = variant
        if len(self._served) > self.limit:
            self._served.popitem(last=False)

    def get(self, request_id: str) -> Variant | None:
        return self._served.get(request_id)


class EndpointRuntime:
    """One revision of an endpoint: versions by variant name, router, batchers."""

    def __init__(
        self,
        endpoint: Endpoint,
        versions: dict[str, LoadedVersion],
        *,
        executor: Executor | None = None,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.versions = versions
        self.router = TrafficRouter(endpoint.policy, endpoint=endpoint.name)
        self.recent = RecentRequests()
        self.batchers: dict[str, MicroBatcher[Any, Any]] = {}
        if endpoint.batching.enabled:
            for variant_name, handle in versions.items():
                self.batchers[variant_name] = _batcher(endpoint.batching, handle, executor, on_batch)

    def adopt(self, previous: EndpointRuntime) -> None:
        """Carry over ``previous``'s recent request ids and traffic router, the router switched
        to this revision's policy: a variant whose model is unchanged keeps its statistics (a
        canary going from 10% to 50% keeps its evidence). Call on the event loop at the swap
        itself, so no request routes by the new policy into the old revision's versions."""
        previous.router.update(self.endpoint.policy)
        self.router = previous.router
        self.recent = previous.recent  # feedback may arrive after an update

    @property
    def primary(self) -> LoadedVersion:
        return self.versions[self.endpoint.policy.primary.name]

    def by_version(self, version: str) -> tuple[Variant, LoadedVersion] | None:
        """The live variant serving model version ``version`` (``/v2/models/m/versions/v``)."""
        for variant in self.router.policy.live:
            handle = self.versions.get(variant.name)
            if handle is not None and handle.version == version:
                return variant, handle
        return None

    async def predict(self, variant: str, model_input: Any) -> Any:
        """Predict on ``variant``: through its batcher when batching is on, else inline (a
        sub-millisecond predict costs less on the event loop than a hop to a thread) unless the
        version's predict waits on I/O."""
        batcher = self.batchers.get(variant)
        if batcher is not None:
            return await batcher.submit(model_input)
        handle = self.versions[variant]
        if handle.blocking:
            return await asyncio.to_thread(handle.predict, model_input)
        return handle.predict(model_input)

    async def close(self) -> None:
        """Let queued requests finish on this revision, then free its threads."""
        for batcher in self.batchers.values():
            await batcher.close()


def _batcher(
    config: BatchingConfig,
    handle: LoadedVersion,
    executor: Executor | None,
    on_batch: Callable[[str, int], None] | None,
) -> MicroBatcher[Any, Any]:
    def predict(items: list[Any]) -> Sequence[Any]:
        return predict_many(handle.predict, items)

    def observed(size: int, _seconds: float) -> None:
        if on_batch is not None:
            on_batch(handle.version, size)

    return MicroBatcher(
        predict,
        max_batch_size=config.max_batch_size,
        max_latency_ms=config.max_latency_ms,
        max_queue=config.max_queue,
        executor=executor,
        on_batch=observed,
        name=handle.model_name,
    )


Loader = Callable[..., LoadedVersion]
"""Called as ``loader(uri, trust_pickle=flag)``, like :func:`load_version`."""


def build_runtime(
    endpoint: Endpoint,
    loader: Loader,
    *,
    cache: dict[tuple[str, bool], LoadedVersion] | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> EndpointRuntime:
    """Load every variant of ``endpoint`` (reusing ``cache`` by URI and ``trust_pickle``: a
    canary step that keeps the same versions does not reload them, and a model loaded for an
    endpoint that trusts pickles never serves one that does not) and build its runtime. Runs
    off the event loop."""
    cache = cache if cache is not None else {}
    versions: dict[str, LoadedVersion] = {}
    for variant in endpoint.policy.variants:
        key = (variant.model_uri, endpoint.trust_pickle)
        if key not in cache:
            log.info("endpoint %s: loading %s", endpoint.name, variant.model_uri)
            cache[key] = loader(variant.model_uri, trust_pickle=endpoint.trust_pickle)
        versions[variant.name] = cache[key]
    return EndpointRuntime(endpoint, versions, on_batch=on_batch)
