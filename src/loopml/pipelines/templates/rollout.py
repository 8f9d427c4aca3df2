"""The last two stages of the continuous-training template: canary deployment and the decision.

:func:`deploy` gives the candidate ``canary_percent`` of the endpoint's live traffic under a
rollback policy on live quality (the score callers report for each answer, e.g. whether a
delayed label matched the prediction) and error rate. The serving process judges the canary
on every answer and sends all traffic back to the stable version when it is worse
(:class:`loopml.serving.deployments.RollbackJudge`), recording a ``rollback`` event with the
evidence. :func:`decide` waits for that evidence: a rollback ends the run ``rolled_back``;
both arms scored beyond ``canary_min_requests`` without one promotes the version in the
registry and on the endpoint.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidInput, NotFound
from loopml.pipelines.templates.records import CHALLENGER, STATUS_TAG, CTConfig, Decision, LiveTraffic

if TYPE_CHECKING:
    from loopml.registry.records import ModelVersion
    from loopml.serving.records import DeploymentEvent, TrafficPolicy
    from loopml.serving.service import EndpointService

POLL_S = 0.2
_JUDGE_SLACK = 10  # the router judges every 10 observations: wait that many more scored answers


def model_uri(config: CTConfig, version: int) -> str:
    """The pinned URI an endpoint variant serves, e.g. ``models:/fraud/2``."""
    return f"models:/{config.model_name}/{version}"


def rollback_policy(config: CTConfig) -> Any:
    """The endpoint's :class:`~loopml.serving.records.RollbackPolicy` from the template's config."""
    from loopml.serving.records import RollbackPolicy

    return RollbackPolicy(
        min_requests=config.canary_min_requests,
        max_error_rate_delta=config.max_error_rate_delta,
        max_p99_latency_ratio=config.max_p99_latency_ratio,
        max_quality_drop=config.max_quality_drop,
    )


def deploy(version: ModelVersion, config: CTConfig, endpoints: EndpointService) -> TrafficPolicy:
    """Route ``canary_percent`` of the endpoint's traffic to ``version`` (a new endpoint serves
    it alone); returns the policy now in force."""
    from loopml.serving.records import TrafficPolicy

    name = _endpoint(config)
    uri = model_uri(config, version.version)
    try:
        current = endpoints.get_endpoint(name)
    except NotFound:
        policy = replace(TrafficPolicy.single(uri), rollback=rollback_policy(config))
        desc = f"{config.model_name}, shipped by continuous training"
        return endpoints.create_endpoint(name, policy, description=desc).policy
    stable = current.policy.primary.model_uri
    if stable == uri:
        return current.policy
    policy = replace(
        TrafficPolicy.canary(stable, uri, config.canary_percent), rollback=rollback_policy(config)
    )
    reason = f"canary: {config.canary_percent:g}% of traffic to {uri} (stable {stable})"
    return endpoints.update_endpoint(name, policy=policy, reason=reason).policy


def decide(
    version: ModelVersion,
    config: CTConfig,
    endpoints: EndpointService,
    live: LiveTraffic | None = None,
    *,
    since_ms: int | None = None,
) -> Decision:
    """Wait for the canary's verdict, then promote ``version`` or record why it was rolled back.

    ``live`` gives the serving process's per-variant statistics (default: ``endpoints`` itself
    when it is the HTTP client). Without enough scored answers by ``canary_timeout_s`` the
    canary is rolled back: no evidence is no reason to ship."""
    name = _endpoint(config)
    uri = model_uri(config, version.version)
    policy = endpoints.get_endpoint(name).policy
    if policy.primary.model_uri == uri and len(policy.live) == 1:
        return _promote(version, config, endpoints, "first version on the endpoint", {})
    live = live or live_of(endpoints)
    since_ms = since_ms if since_ms is not None else int(time.time() * 1000) - 60_000
    deadline = time.monotonic() + config.canary_timeout_s
    needed = config.canary_min_requests + _JUDGE_SLACK
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rolled = _rollback_event(endpoints, name, uri, since_ms)
        if rolled is not None:
            return _rolled_back(version, config, rolled.reason, rolled.evidence)
        stats = live.traffic(name, metric="quality")["stats"]
        if "canary" in stats and all(stats[v].get("quality_n", 0) >= needed for v in ("primary", "canary")):
            time.sleep(POLL_S)  # the judge's last check runs in the serving process: let it land
            rolled = _rollback_event(endpoints, name, uri, since_ms)
            if rolled is not None:
                return _rolled_back(version, config, rolled.reason, rolled.evidence)
            reason = _comparison(stats)
            return _promote(version, config, endpoints, reason, {"stats": stats})
        time.sleep(POLL_S)
    return _time_out(version, config, endpoints, stats)


def _endpoint(config: CTConfig) -> str:
    if not config.endpoint:
        raise InvalidInput(
            "deploy: the template has no endpoint; set CTConfig(endpoint=...) to ship by canary",
            details={"field": "endpoint"},
        )
    return config.endpoint


def live_of(endpoints: Any) -> LiveTraffic:
    """``endpoints`` as the source of live statistics; ``InvalidInput`` when it has none (the
    local service: the statistics live in the serving process)."""
    if not hasattr(endpoints, "traffic"):
        raise InvalidInput(
            "the canary's live statistics live in the serving process: set CTConfig(serving_url=...) "
            "or pass live= (the HttpEndpointService of the loopml server hosting the endpoint)",
            details={"field": "serving_url"},
        )
    live: LiveTraffic = endpoints
    return live


def _rollback_event(endpoints: EndpointService, name: str, uri: str, since_ms: int) -> DeploymentEvent | None:
    for event in endpoints.list_events(name, limit=20):
        mine = event.evidence.get("canary_model_uri", uri) == uri
        if event.kind == "rollback" and event.timestamp >= since_ms and mine:
            return event
    return None


def _comparison(stats: dict[str, Any]) -> str:
    p, c = stats["primary"], stats["canary"]
    return (
        f"canary live quality {c['quality_mean']:.3f} over {c['quality_n']} answers vs stable "
        f"{p['quality_mean']:.3f} over {p['quality_n']}; error rate {c['error_rate']:.3f} vs "
        f"{p['error_rate']:.3f}"
    )


def _promote(
    version: ModelVersion, config: CTConfig, endpoints: EndpointService, reason: str, evidence: dict[str, Any]
) -> Decision:
    import loopml.registry
    from loopml.serving.records import TrafficPolicy

    loopml.registry.promote(config.model_name, version.version, reason=f"continuous training: {reason}")
    svc = loopml.registry.service()
    svc.set_model_version_tag(config.model_name, version.version, STATUS_TAG, "champion")
    _drop_challenger(config, version)
    name = _endpoint(config)
    uri = model_uri(config, version.version)
    current = endpoints.get_endpoint(name).policy
    if not (current.primary.model_uri == uri and len(current.variants) == 1):
        policy = replace(TrafficPolicy.single(uri), rollback=rollback_policy(config))
        endpoints.update_endpoint(name, policy=policy, reason=reason, kind="promoted", evidence=evidence)
    return Decision("promoted", reason, evidence)


def _rolled_back(version: ModelVersion, config: CTConfig, reason: str, evidence: dict[str, Any]) -> Decision:
    import loopml.registry

    svc = loopml.registry.service()
    svc.set_model_version_tag(config.model_name, version.version, STATUS_TAG, "rolled_back")
    _drop_challenger(config, version)
    return Decision("rolled_back", reason, evidence)


def _drop_challenger(config: CTConfig, version: ModelVersion) -> None:
    """The ``challenger`` alias names the version in trial; the trial is over."""
    import loopml.registry

    svc = loopml.registry.service()
    if svc.get_registered_model(config.model_name).aliases.get(CHALLENGER) == version.version:
        svc.delete_registered_model_alias(config.model_name, CHALLENGER)


def _time_out(
    version: ModelVersion, config: CTConfig, endpoints: EndpointService, stats: dict[str, Any]
) -> Decision:
    from loopml.serving.records import DeploymentEvent

    name = _endpoint(config)
    seen = {v: s.get("quality_n", 0) for v, s in stats.items()}
    reason = (
        f"canary {model_uri(config, version.version)} got too few scored answers in "
        f"{config.canary_timeout_s:g} s ({seen}; needs {config.canary_min_requests} per arm): "
        "all traffic returned to the stable version"
    )
    event = DeploymentEvent.new(name, "rollback", reason=reason, evidence={"stats": stats})
    endpoints.rollback(name, event)
    return _rolled_back(version, config, reason, {"stats": stats})
