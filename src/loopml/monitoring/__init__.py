"""Monitoring: data quality, drift statistics, window profiles and reports.

from loopml.monitoring import compute_drift, check_quality, write_report

ref = loopml.data.get("churn", 3)
drift = compute_drift(ref, todays_rows)
quality = check_quality(ref, todays_rows)
write_report("report.html", drift, quality=quality)
"""

from __future__ import annotations

from loopml.monitoring.api import log_labels, reset, service
from loopml.monitoring.drift import compute_drift
from loopml.monitoring.quality import check_quality
from loopml.monitoring.records import DriftResult, FeatureDrift, QualityIssue, QualityReport
from loopml.monitoring.report import report_dict, write_report
from loopml.monitoring.windows import WindowProfile, profile_window

__all__ = [
    "DriftResult",
    "FeatureDrift",
    "QualityIssue",
    "QualityReport",
    "WindowProfile",
    "check_quality",
    "compute_drift",
    "log_labels",
    "profile_window",
    "report_dict",
    "reset",
    "service",
    "write_report",
]
