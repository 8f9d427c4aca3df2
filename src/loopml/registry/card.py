"""Model cards in Markdown, rendered from registry metadata alone (no model or data loaded)."""

from __future__ import annotations

from collections.abc import Sequence

from loopml.registry.records import Evaluation, Gate, Lineage, PromotionRequest, RegisteredModel, Transition


def render_card(
    model: RegisteredModel,
    lineage: Lineage,
    *,
    gate: Gate | None,
    evaluations: Sequence[Evaluation],
    transitions: Sequence[Transition],
    requests: Sequence[PromotionRequest],
) -> str:
    """The card of ``lineage.model``."""
    raise NotImplementedError
