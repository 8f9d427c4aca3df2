"""Serving metrics in Prometheus text format, parsed back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from loopml.serving.metrics import ServingMetrics


def samples(metrics: ServingMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def test_requests_errors_and_latency_per_endpoint_version_variant() -> None:
    m = ServingMetrics()
    m.request("churn", "3", "primary", latency_ms=2.0)
    m.request("churn", "3", "primary", latency_ms=4.0)
    m.request("churn", "4", "canary", latency_ms=30.0, error=True)
    s = samples(m)
    primary = labels(endpoint="churn", version="3", variant="primary")
    canary = labels(endpoint="churn", version="4", variant="canary")
    assert s[("loopml_serving_requests_total", primary)] == 2
    assert s[("loopml_serving_requests_total", canary)] == 1
    assert s[("loopml_serving_errors_total", canary | {("kind", "predict")})] == 1
    assert ("loopml_serving_errors_total", primary | {("kind", "predict")}) not in s
    assert s[("loopml_serving_request_duration_seconds_count", primary)] == 2
    assert abs(s[("loopml_serving_request_duration_seconds_sum", primary)] - 0.006) < 1e-9
    # 2 ms and 4 ms are both under the 5 ms bucket; the canary's 30 ms is not
    assert s[("loopml_serving_request_duration_seconds_bucket", primary | {("le", "0.005")})] == 2
    assert s[("loopml_serving_request_duration_seconds_bucket", canary | {("le", "0.02")})] == 0


def test_batch_sizes_queue_depth_and_dropped_log_records() -> None:
    m = ServingMetrics()
    depth = [0]
    dropped = [0]
    m.track_queue_depth("churn", "3", lambda: depth[0])
    m.track_log_dropped(lambda: dropped[0])
    for size in (1, 8, 8, 30):
        m.batch("churn", "3", size)
    depth[0], dropped[0] = 17, 5
    s = samples(m)
    key = labels(endpoint="churn", version="3")
    assert s[("loopml_serving_batch_size_count", key)] == 4
    assert s[("loopml_serving_batch_size_sum", key)] == 47
    assert s[("loopml_serving_batch_size_bucket", key | {("le", "8.0")})] == 3
    # read at scrape time: the current values, not those at registration
    assert s[("loopml_serving_queue_depth", key)] == 17
    assert s[("loopml_serving_prediction_log_dropped_total", frozenset())] == 5
    m.forget("churn", "3")
    assert ("loopml_serving_queue_depth", key) not in samples(m)


def test_rejections_rollbacks_and_weights() -> None:
    m = ServingMetrics()
    m.error("churn", "", "", kind="invalid_input")
    m.rollback("churn")
    m.set_weight("churn", "canary", 10)
    s = samples(m)
    assert (
        s[
            (
                "loopml_serving_errors_total",
                labels(endpoint="churn", version="", variant="", kind="invalid_input"),
            )
        ]
        == 1
    )
    assert s[("loopml_serving_rollbacks_total", labels(endpoint="churn"))] == 1
    assert s[("loopml_serving_traffic_weight", labels(endpoint="churn", variant="canary"))] == 10
    m.set_weights("other", {"primary": 100})
    m.set_weights("churn", {"primary": 100})  # after a rollback: the canary is gone
    s = samples(m)
    assert s[("loopml_serving_traffic_weight", labels(endpoint="churn", variant="canary"))] == 0
    assert s[("loopml_serving_traffic_weight", labels(endpoint="churn", variant="primary"))] == 100
    assert s[("loopml_serving_traffic_weight", labels(endpoint="other", variant="primary"))] == 100


def test_each_instance_has_its_own_registry_and_the_prometheus_content_type() -> None:
    a, b = ServingMetrics(), ServingMetrics()
    a.request("churn", "1", "primary", latency_ms=1.0)
    assert (
        "loopml_serving_requests_total",
        labels(endpoint="churn", version="1", variant="primary"),
    ) not in samples(b)
    body, content_type = a.render()
    assert content_type.startswith("text/plain; version=")
    assert b"# TYPE loopml_serving_request_duration_seconds histogram" in body
