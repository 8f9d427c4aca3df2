"""Typed, JSON-able records of monitoring statistics: drift results, quality reports, windows.

Every record round-trips through ``to_dict``/``from_dict`` so results can be stored, sent over
HTTP and rendered in a report without losing a field.

>>> f = FeatureDrift("age", "numeric", "wasserstein", statistic=0.3, threshold=0.1, drifted=True)
>>> FeatureDrift.from_dict(f.to_dict()) == f
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: ``FeatureDrift.status`` values: ``ok`` means the statistic was computed; every other status
#: comes with a ``note`` explaining why the column was not (or could not be) tested.
STATUSES = ("ok", "missing", "empty", "all_null", "constant", "single_category", "unsupported")


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """Drift of one column between the reference and the current window.

    ``method`` is the test that decides ``drifted`` (``statistic`` compared with ``threshold``:
    a p-value test drifts when ``p_value < threshold``, a distance when ``statistic >= threshold``).
    ``stats`` holds every other statistic computed for the column (psi, ks, wasserstein, js, kl,
    hellinger, chi2 ...).  ``status``/``note`` explain a column that could not be tested.
    ``edges``/``reference``/``current`` are the binned distributions (bin counts, or categories
    and counts) the report draws.
    """

    column: str
    kind: str
    method: str
    statistic: float | None = None
    p_value: float | None = None
    threshold: float = 0.0
    drifted: bool = False
    status: str = "ok"
    note: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    reference_count: int = 0
    current_count: int = 0
    edges: list[float] = field(default_factory=list)
    categories: list[Any] = field(default_factory=list)
    reference_hist: list[int] = field(default_factory=list)
    current_hist: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureDrift:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class DriftResult:
    """Drift of a whole table: per-feature results, the share drifted and the dataset verdict.

    ``dataset_drift`` is ``drift_share >= share_threshold`` over the columns that could be tested
    (status ``ok``).  ``prediction`` is the drift of the model output column, when one was named.
    """

    features: list[FeatureDrift]
    drift_share: float
    share_threshold: float
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    correction: str | None = None
    prediction: FeatureDrift | None = None
    note: str = ""

    def feature(self, name: str) -> FeatureDrift:
        """The result of one column (KeyError naming the known columns if absent)."""
        for f in self.features:
            if f.column == name:
                return f
        if self.prediction is not None and self.prediction.column == name:
            return self.prediction
        raise KeyError(f"no drift result for column {name!r}; columns: {[f.column for f in self.features]}")

    @property
    def drifted_columns(self) -> list[str]:
        return [f.column for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("features", "prediction")}
        d["features"] = [f.to_dict() for f in self.features]
        d["prediction"] = None if self.prediction is None else self.prediction.to_dict()
        d["drifted_columns"] = self.drifted_columns
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftResult:
        d = {k: v for k, v in d.items() if k != "drifted_columns"}
        d["features"] = [FeatureDrift.from_dict(f) for f in d["features"]]
        d["prediction"] = None if d.get("prediction") is None else FeatureDrift.from_dict(d["prediction"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class QualityIssue:
    """One data-quality finding about a batch.

    ``kind`` is one of missing_column, extra_column, type_change, null_rate, out_of_range,
    unseen_category, empty_batch; ``severity`` is ``error`` (the batch cannot be scored as the
    reference was) or ``warning``; ``observed``/``expected`` carry the numbers behind the message.
    """

    column: str
    kind: str
    severity: str
    message: str
    observed: Any = None
    expected: Any = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityIssue:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class QualityReport:
    """Data quality of a batch against a reference dataset version's schema and profile."""

    reference: str
    num_rows: int
    issues: list[QualityIssue]
    columns_checked: int = 0

    @property
    def passed(self) -> bool:
        """True when no issue is an error (warnings alone pass)."""
        return not any(i.severity == "error" for i in self.issues)

    def by_kind(self, kind: str) -> list[QualityIssue]:
        return [i for i in self.issues if i.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "num_rows": self.num_rows,
            "columns_checked": self.columns_checked,
            "passed": self.passed,
            "issues": [i.to_dict() for i in self.issues],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityReport:
        return cls(
            reference=str(d["reference"]),
            num_rows=int(d["num_rows"]),
            issues=[QualityIssue.from_dict(i) for i in d.get("issues", [])],
            columns_checked=int(d.get("columns_checked", 0)),
        )
