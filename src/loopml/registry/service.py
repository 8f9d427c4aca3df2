"""The registry contract, implemented locally (over the stores) and remotely (over HTTP).

One behavioural suite (``tests/contract/test_registry_contract.py``) runs against every
implementation. MLflow's model-registry REST API maps one to one onto the first three groups of
methods; gates, evaluations, approvals, the audit trail and lineage are loopml's own.

Conventions every implementation keeps:

* Versions are the integers 1..n per model, never reused after a delete.
* Mutating methods take ``user`` (``None``: the service's default user, ``LOOPML_USER``); the
  HTTP layer passes the caller's identity.
* A missing model, version, alias or request raises ``NotFound`` whose message names what does
  exist ("model 'churn' has no version 7; latest is 6"); an illegal stage move raises
  ``Conflict``; bad names, filters, sources or thresholds raise ``InvalidInput`` with
  ``details={"field": ...}``. Each mutation is one transaction: on error nothing is written.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from loopml.registry.card import render_card
from loopml.registry.records import (
    CHAMPION_ALIAS,
    Evaluation,
    Gate,
    GateResult,
    Lineage,
    ModelStage,
    ModelVersion,
    ModelVersionPage,
    Promotion,
    PromotionRequest,
    RegisteredModel,
    RegisteredModelPage,
    RequestStatus,
    Transition,
)


class RegistryService(abc.ABC):
    """Registered models, versions, aliases, stages, gates, approvals and lineage.

    >>> reg = loopml.registry.service()                                   # doctest: +SKIP
    >>> reg.create_registered_model("churn", description="weekly churn")  # doctest: +SKIP
    >>> mv = reg.create_model_version("churn", "runs:/<run_id>/model")    # doctest: +SKIP
    >>> reg.set_registered_model_alias("churn", "challenger", mv.version) # doctest: +SKIP
    """

    # ---- registered models ---------------------------------------------------------------
    @abc.abstractmethod
    def create_registered_model(
        self,
        name: str,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        user: str | None = None,
    ) -> RegisteredModel:
        """Create an empty model; ``AlreadyExists`` if the name is taken."""

    @abc.abstractmethod
    def get_registered_model(self, name: str) -> RegisteredModel:
        """The model with its tags, aliases and latest version per stage; ``NotFound``."""

    @abc.abstractmethod
    def rename_registered_model(self, name: str, new_name: str, user: str | None = None) -> RegisteredModel:
        """Rename; versions, aliases, gate and history follow. ``AlreadyExists`` if taken."""

    @abc.abstractmethod
    def update_registered_model(
        self, name: str, description: str, user: str | None = None
    ) -> RegisteredModel:
        """Replace the description."""

    @abc.abstractmethod
    def delete_registered_model(self, name: str, user: str | None = None) -> None:
        """Delete the model with its versions, aliases, tags, gate, evaluations and requests
        (the artifacts stay with their runs)."""

    @abc.abstractmethod
    def search_registered_models(
        self,
        filter_string: str = "",
        max_results: int = 100,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> RegisteredModelPage:
        """Models matching MLflow's filter: ``name = 'x'``, ``name LIKE 'ch%'``, ``name ILIKE``,
        ``tags.<key> = 'v'`` (also LIKE/ILIKE/!=), joined by AND. ``order_by``: ``name`` or
        ``last_updated_timestamp`` / ``creation_timestamp``, ``ASC``/``DESC`` (default name ASC).
        ``max_results`` 1..1000; ``page_token`` from the previous page."""

    @abc.abstractmethod
    def set_registered_model_tag(self, name: str, key: str, value: str, user: str | None = None) -> None: ...

    @abc.abstractmethod
    def delete_registered_model_tag(self, name: str, key: str, user: str | None = None) -> None:
        """Remove a tag; removing a tag that is not set is not an error."""

    @abc.abstractmethod
    def get_latest_versions(self, name: str, stages: Sequence[str] = ()) -> list[ModelVersion]:
        """The newest version in each of ``stages`` (all stages when empty), ordered by version."""

    # ---- model versions ------------------------------------------------------------------
    @abc.abstractmethod
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        model_id: str | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        """Register the model at ``source`` as the next version of ``name`` (stage None).

        ``source`` must be an artifact URI loopml issued: ``runs:/<run_id>/<path>`` of an
        existing run with files under ``path``, an ``mlflow-artifacts:/`` URI under a run's or
        a logged model's artifact root, or ``models:/m-<id>`` of an MLflow 3 logged model.
        Local paths, ``file://`` and foreign URIs raise ``InvalidInput`` (field ``source``).
        ``run_id`` is derived from the source when not given, and must agree with it when
        given. The version records the digest of the model's artifacts."""

    @abc.abstractmethod
    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        """``NotFound`` names the latest version (or says the model has none)."""

    @abc.abstractmethod
    def update_model_version(
        self, name: str, version: int | str, description: str, user: str | None = None
    ) -> ModelVersion: ...

    @abc.abstractmethod
    def delete_model_version(self, name: str, version: int | str, user: str | None = None) -> None:
        """Delete a version and the aliases pointing at it; its number is not reused."""

    @abc.abstractmethod
    def search_model_versions(
        self,
        filter_string: str = "",
        max_results: int = 1000,
        order_by: Sequence[str] = (),
        page_token: str | None = None,
    ) -> ModelVersionPage:
        """Versions matching ``name = 'x'`` (or LIKE/ILIKE), ``run_id = '...'`` (or
        ``run_id IN ('a', 'b')``), ``version_number = 3``, ``source_path = '...'``,
        ``tags.<key> = 'v'``, joined by AND. Default order: name ASC, version DESC."""

    @abc.abstractmethod
    def set_model_version_tag(
        self, name: str, version: int | str, key: str, value: str, user: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    def delete_model_version_tag(
        self, name: str, version: int | str, key: str, user: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        """The ``mlflow-artifacts:/`` URI the version's files live under."""

    # ---- aliases -------------------------------------------------------------------------
    @abc.abstractmethod
    def set_registered_model_alias(
        self, name: str, alias: str, version: int | str, user: str | None = None
    ) -> None:
        """Point ``alias`` at ``version`` (moving it if it pointed elsewhere). Aliases are
        lowercase-insensitive names like ``champion``; ``latest`` and ``v<digits>`` are reserved."""

    @abc.abstractmethod
    def delete_registered_model_alias(self, name: str, alias: str, user: str | None = None) -> None:
        """``NotFound`` (naming the model's aliases) if the alias is not set."""

    @abc.abstractmethod
    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """``NotFound`` names the aliases the model has."""

    # ---- stages --------------------------------------------------------------------------
    @abc.abstractmethod
    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: str | ModelStage,
        archive_existing_versions: bool = False,
        reason: str | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        """Move a version along :data:`loopml.registry.records.LEGAL_TRANSITIONS` (``Conflict``
        otherwise). With ``archive_existing_versions`` the other versions in the target stage
        become Archived in the same transaction. A move to Production goes through the model's
        gate exactly like :meth:`promote` (``GateFailed``); if the gate requires approval, a
        pending request is created and ``PermissionDenied`` names it. Every move is recorded
        (:meth:`list_transitions`)."""

    # ---- gates, evaluations, approvals ---------------------------------------------------
    @abc.abstractmethod
    def set_gate(
        self,
        name: str,
        thresholds: Sequence[str],
        require_approval: bool = False,
        user: str | None = None,
    ) -> Gate:
        """Declare the thresholds a version must meet to reach Production, replacing earlier
        ones. Grammar (see ``loopml.registry.gates``): ``<metric> <op> <number>`` or
        ``<metric> <op> champion.<metric> [+|- <number>]`` with ``op`` in ``>= > <= <``.
        A bad threshold raises ``InvalidInput`` naming it; nothing is stored."""

    @abc.abstractmethod
    def get_gate(self, name: str) -> Gate | None:
        """The model's gate, or None when it declares none."""

    @abc.abstractmethod
    def record_evaluation(
        self,
        name: str,
        version: int | str,
        dataset_name: str,
        dataset_version: int,
        dataset_digest: str,
        metrics: dict[str, float],
        champion_version: int | None = None,
        champion_metrics: dict[str, float] | None = None,
        user: str | None = None,
    ) -> Evaluation:
        """Store metrics computed by :func:`loopml.registry.evaluate` (candidate and champion on
        the same dataset version). Metric values must be finite numbers."""

    @abc.abstractmethod
    def list_evaluations(self, name: str, version: int | str | None = None) -> list[Evaluation]:
        """Evaluations of a model (or one version), newest first."""

    @abc.abstractmethod
    def check_gate(self, name: str, version: int | str) -> GateResult:
        """The gate's verdict on the latest evaluation of ``version``, without moving anything.

        No gate: passes with a note. No evaluation: fails, saying to run ``loopml models
        evaluate``. A ``champion.X`` threshold when the model had no champion at evaluation
        time passes with the note "no champion"; when the champion has changed since the
        evaluation, it fails and says to evaluate again."""

    @abc.abstractmethod
    def promote(
        self,
        name: str,
        version: int | str,
        to: str | ModelStage = ModelStage.PRODUCTION,
        reason: str | None = None,
        user: str | None = None,
    ) -> Promotion:
        """Run the gate and, if it passes, move the version (to Production: the previous
        Production versions become Archived and the ``champion`` alias moves to it).

        Gate failure raises ``GateFailed`` whose message has one line per threshold and whose
        ``details["results"]`` lists each with value, limit and pass. With ``require_approval``
        nothing moves yet: a pending :class:`PromotionRequest` is returned in the Promotion."""

    @abc.abstractmethod
    def list_requests(
        self, name: str | None = None, status: RequestStatus | str | None = RequestStatus.PENDING
    ) -> list[PromotionRequest]:
        """Promotion requests, newest first (``status=None``: all)."""

    @abc.abstractmethod
    def get_request(self, request_id: str) -> PromotionRequest: ...

    @abc.abstractmethod
    def approve(
        self,
        request_id: str,
        reason: str | None = None,
        user: str | None = None,
        *,
        digest: str | None = None,
        expected_champion: int | None = None,
    ) -> Promotion:
        """Apply a pending request. The requester cannot approve their own request
        (``PermissionDenied``); a decided request raises ``Conflict``. The gate is checked
        again, so evidence that went stale while waiting does not slip through.

        ``digest`` is the artifact digest the approver reviewed and ``expected_champion`` the
        Production version they saw (0: none): the move is a compare-and-swap, so if either
        changed since, nothing moves and ``Conflict`` says what changed. The transition records
        the approved version's digest and the approver."""

    @abc.abstractmethod
    def reject(self, request_id: str, reason: str | None = None, user: str | None = None) -> PromotionRequest:
        """Record a rejection (anyone but the requester); nothing moves."""

    @abc.abstractmethod
    def list_transitions(self, name: str, version: int | str | None = None) -> list[Transition]:
        """The audit trail, oldest first: who, when, why, from/to, gate results, digest."""

    # ---- lineage -------------------------------------------------------------------------
    @abc.abstractmethod
    def lineage(self, name: str, version: int | str) -> Lineage:
        """model version -> run (experiment, name, metrics) -> commit, branch, dirty flag ->
        dataset versions (the run's inputs matched to loopml.data versions by digest)."""

    @abc.abstractmethod
    def models_trained_on(self, dataset_name: str, dataset_version: int | str) -> list[ModelVersion]:
        """Model versions whose run had that dataset version as an input (the reverse query)."""

    # ---- derived operations, shared by every implementation -------------------------------
    def champion(self, name: str) -> ModelVersion | None:
        """The version the ``champion`` alias names, else the newest Production version."""
        model = self.get_registered_model(name)
        if CHAMPION_ALIAS in model.aliases:
            return self.get_model_version(name, model.aliases[CHAMPION_ALIAS])
        prod = [v for v in model.latest_versions if v.current_stage is ModelStage.PRODUCTION]
        return prod[0] if prod else None

    def card(self, name: str, version: int | str) -> str:
        """A Markdown model card: description, tags, aliases and stage, metrics, data,
        signature, gate results, transitions and approvals."""
        model = self.get_registered_model(name)
        lineage = self.lineage(name, version)
        v = lineage.model.version
        return render_card(
            model,
            lineage,
            gate=self.get_gate(name),
            evaluations=self.list_evaluations(name, v),
            transitions=self.list_transitions(name, v),
            requests=[r for r in self.list_requests(name, status=None) if r.version == v],
        )

    def close(self) -> None:  # noqa: B027 - optional hook, most implementations hold nothing
        """Release connections; the service is not used afterwards."""
