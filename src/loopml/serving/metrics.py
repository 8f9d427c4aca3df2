"""Prometheus metrics for the inference server, exposed at ``/metrics``.

Every series is labelled by endpoint, model version and variant (``primary``,
``canary``, ``shadow``, an A/B arm...), so a dashboard can put a canary's
latency next to the stable version's. The metrics live in their own
``CollectorRegistry``: two servers (or two tests) in one process never share
or double-register series, and ``/metrics`` shows serving figures only.

Latencies are exported in seconds, as Prometheus conventions ask; the methods
take milliseconds because that is what the rest of serving measures.

>>> metrics = ServingMetrics()
>>> metrics.request("churn", "3", "primary", latency_ms=2.5)
>>> body, content_type = metrics.render()
>>> b'loopml_serving_requests_total{endpoint="churn",variant="primary",version="3"} 1.0' in body
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

# Seconds. Dense below 10 ms, where a healthy online model lives and where a p99 moves first.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

_VARIANT_LABELS = ("endpoint", "version", "variant")


class ServingMetrics:
    """The serving series, on a registry of their own.

    The app calls :meth:`request` once per answered request (``error=True`` for a
    failure, with a ``kind``), :meth:`batch` per micro-batch, and wires the
    queue depth and the prediction log's dropped counter as callbacks read at
    scrape time, so they are never stale and cost nothing per request.

    >>> metrics = ServingMetrics()
    >>> metrics.error("churn", "", "", kind="invalid_input")
    >>> b'kind="invalid_input"' in metrics.render()[0]
    True
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "loopml_serving_requests", "Inference requests answered.", _VARIANT_LABELS, registry=r
        )
        self.errors = Counter(
            "loopml_serving_errors",
            "Inference requests that failed, by kind (invalid_input, predict, unavailable, ...).",
            (*_VARIANT_LABELS, "kind"),
            registry=r,
        )
        self.latency = Histogram(
            "loopml_serving_request_duration_seconds",
            "Time to answer an inference request, validation to response.",
            _VARIANT_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "loopml_serving_batch_size",
            "Requests coalesced into one predict call by the micro-batcher.",
            ("endpoint", "version"),
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "loopml_serving_queue_depth",
            "Requests waiting for a micro-batch.",
            ("endpoint", "version"),
            registry=r,
        )
        self.weight = Gauge(
            "loopml_serving_traffic_weight",
            "Share of an endpoint's traffic routed to a variant, in percent.",
            ("endpoint", "variant"),
            registry=r,
        )
        self.rollbacks = Counter(
            "loopml_serving_rollbacks",
            "Automatic rollbacks of a canary to the stable version.",
            ("endpoint",),
            registry=r,
        )
        self._dropped = _CallbackCounter(
            "loopml_serving_prediction_log_dropped",
            "Prediction-log records dropped because the log queue was full.",
        )
        r.register(self._dropped)
        self._children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self._weighted: dict[str, set[str]] = {}  # endpoint -> variants with a weight series

    def request(
        self,
        endpoint: str,
        version: str,
        variant: str,
        latency_ms: float,
        *,
        error: bool = False,
        kind: str = "predict",
    ) -> None:
        """Count one answered request and its latency (and its failure, if it failed)."""
        labels = (endpoint, str(version), variant)
        children = self._children.get(labels)
        if children is None:
            # labels() hashes and locks on every call: resolve each series once (hot path).
            children = self._children[labels] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(latency_ms / 1000.0)
        if error:
            self.errors.labels(*labels, kind).inc()

    def error(self, endpoint: str, version: str, variant: str, *, kind: str) -> None:
        """Count a failure that never reached a model (bad input, overload, unknown endpoint)."""
        self.errors.labels(endpoint, str(version), variant, kind).inc()

    def batch(self, endpoint: str, version: str, size: int) -> None:
        """Record one micro-batch's size."""
        self.batch_size.labels(endpoint, str(version)).observe(size)

    def track_queue_depth(self, endpoint: str, version: str, depth: Callable[[], int]) -> None:
        """Read ``depth()`` (e.g. ``lambda: batcher.queue_depth``) at every scrape."""
        self.queue.labels(endpoint, str(version)).set_function(lambda: float(depth()))

    def forget(self, endpoint: str, version: str) -> None:
        """Drop a retired version's queue gauge (its counters stay: they are history)."""
        with contextlib.suppress(KeyError):
            self.queue.remove(endpoint, str(version))

    def track_log_dropped(self, dropped: Callable[[], int]) -> None:
        """Export the prediction log's own dropped counter (e.g. ``lambda: log.dropped``)."""
        self._dropped.source = dropped

    def set_weight(self, endpoint: str, variant: str, percent: float) -> None:
        """Publish the router's current split (changes with canary steps and rollbacks)."""
        self._weighted.setdefault(endpoint, set()).add(variant)
        self.weight.labels(endpoint, variant).set(percent)

    def set_weights(self, endpoint: str, weights: Mapping[str, float]) -> None:
        """Publish an endpoint's whole split: variants that left it (a rolled-back canary) go
        to 0 rather than showing their last weight forever."""
        known = self._weighted.setdefault(endpoint, set())
        for variant in known - set(weights):
            self.weight.labels(endpoint, variant).set(0.0)
        for variant, percent in weights.items():
            self.set_weight(endpoint, variant, percent)

    def rollback(self, endpoint: str) -> None:
        """Count an automatic rollback."""
        self.rollbacks.labels(endpoint).inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for ``/metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _CallbackCounter(Collector):
    """A counter whose value lives elsewhere (the prediction log counts its own drops)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.source: Callable[[], int] = lambda: 0

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=float(self.source()))

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)
