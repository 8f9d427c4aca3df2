"""The metadata schema: SQLAlchemy Core tables, the single source for queries.

Migrations under ``store/migrations`` create exactly these tables; a test
compares the migrated database with this metadata so the two never drift.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(500), nullable=False, unique=True),
    Column("artifact_location", String(2000), nullable=False),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("experiment_id", "key"),
)

runs = Table(
    "runs",
    metadata,
    # A compact integer key for the metric tables (a 32-character uuid in every metric row
    # doubles their B-trees); the uuid is the public id.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_uuid", String(32), nullable=False, unique=True),
    Column("name", String(250), nullable=False),
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("status", String(20), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle_stage", String(20), nullable=False),
    Column("artifact_uri", String(2000), nullable=False),
    Column("deleted_time", BigInteger, nullable=True),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)

params = Table(
    "params",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", String(6000), nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
)

# Every logged point, packed per (run, key, batch): see loopml.tracking.metric_chunks.
# The digest of the packed data is in the key, so re-sending a batch is a no-op.
metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("digest", LargeBinary(16), nullable=False),
    Column("points", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_id", "key", "digest"),
)

# The point with the greatest (step, timestamp, value) per key: what search filters and sorts on.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float(precision=53), nullable=False),
    Column("is_nan", Boolean, nullable=False),
    PrimaryKeyConstraint("run_id", "key"),
    # Covers "key = k AND is_nan = false ORDER BY value": search walks it in order and stops early.
    Index("ix_latest_metrics_key_value", "key", "is_nan", "value"),
    sqlite_with_rowid=False,
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_uuid", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text, nullable=True),
    Column("profile", Text, nullable=True),
    UniqueConstraint("experiment_id", "name", "digest", name="uq_datasets_name_digest"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("dataset_uuid", String(32), ForeignKey("datasets.dataset_uuid"), nullable=False),
    Column("context", String(64), nullable=True),
    Column("tags", Text, nullable=False),
    PrimaryKeyConstraint("run_uuid", "dataset_uuid"),
)

logged_models = Table(
    "logged_models",
    metadata,
    Column("model_id", String(64), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("artifact_location", String(2000), nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=True),
    Column("creation_timestamp", BigInteger, nullable=False),
    Column("last_updated_timestamp", BigInteger, nullable=False),
    Column("source_run_id", String(32), nullable=True),
    Column("model_type", String(500), nullable=True),
    Column("lifecycle_stage", String(32), nullable=False),
    Index("ix_logged_models_experiment", "experiment_id"),
)

logged_model_tags = Table(
    "logged_model_tags",
    metadata,
    Column("model_id", String(64), ForeignKey("logged_models.model_id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
)

logged_model_params = Table(
    "logged_model_params",
    metadata,
    Column("model_id", String(64), ForeignKey("logged_models.model_id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
)

run_outputs = Table(
    "run_outputs",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid"), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("step", BigInteger, nullable=False),
    PrimaryKeyConstraint("run_uuid", "model_id"),
)

# The artifact manifest: a full relative path under the artifact root -> blob digest.
artifacts = Table(
    "artifacts",
    metadata,
    Column("path", String(1000), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
)

# ---- data: dataset versions (loopml.data; migration 0003) ------------------------------------

# One row per registered dataset version; the rows themselves are a Parquet blob (snapshot_digest)
# in the content-addressed store.  (name, digest) is unique so re-registering the same rows is a no-op.
dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("name", String(500), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("num_rows", BigInteger, nullable=False),
    Column("schema", Text, nullable=False),
    Column("profile", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("snapshot_digest", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("description", Text, nullable=False),
    Column("tags", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
    PrimaryKeyConstraint("name", "version"),
    UniqueConstraint("name", "digest", name="uq_dataset_versions_name_digest"),
    Index("ix_dataset_versions_digest", "digest"),
)

# ---- registry: registered models, versions, aliases, gates, approvals (migration 0004) -------

# Models have an integer key so a rename is one UPDATE; version numbers are never reused, so the
# highest one ever issued is kept on the model.
registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("creation_timestamp", BigInteger, nullable=False),
    Column("last_updated_timestamp", BigInteger, nullable=False),
    Column("max_version", Integer, nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("creation_timestamp", BigInteger, nullable=False),
    Column("last_updated_timestamp", BigInteger, nullable=False),
    Column("description", Text, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("current_stage", String(20), nullable=False),
    Column("source", String(2000), nullable=False),
    Column("storage_location", String(2000), nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("logged_model_id", String(64), nullable=True),
    Column("digest", String(64), nullable=False),
    Column("status", String(20), nullable=False),
    PrimaryKeyConstraint("model_id", "version"),
    Index("ix_model_versions_run_id", "run_id"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "version", "key"),
)

registered_model_aliases = Table(
    "registered_model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("alias", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("model_id", "alias"),
)

model_gates = Table(
    "model_gates",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), primary_key=True, autoincrement=False),
    Column("thresholds", Text, nullable=False),  # JSON list of threshold strings
    Column("require_approval", Boolean, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

model_evaluations = Table(
    "model_evaluations",
    metadata,
    Column("evaluation_id", String(32), primary_key=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("dataset_name", String(500), nullable=False),
    Column("dataset_version", Integer, nullable=False),
    Column("dataset_digest", String(64), nullable=False),
    Column("metrics", Text, nullable=False),  # JSON object metric -> value
    Column("champion_version", Integer, nullable=True),
    Column("champion_metrics", Text, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("created", BigInteger, nullable=False),
    Index("ix_model_evaluations_version", "model_id", "version", "created"),
)

promotion_requests = Table(
    "promotion_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("to_stage", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("requested_by", String(256), nullable=False),
    Column("requested_at", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("gate", Text, nullable=False),  # JSON GateResult at request time
    Column("decided_by", String(256), nullable=True),
    Column("decided_at", BigInteger, nullable=True),
    Column("decision_reason", Text, nullable=True),
    Index("ix_promotion_requests_model", "model_id", "status"),
)

# The audit trail of stage moves: who, when, why, from/to, the gate's verdict and the digest.
model_transitions = Table(
    "model_transitions",
    metadata,
    Column("transition_id", String(32), primary_key=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("from_stage", String(20), nullable=False),
    Column("to_stage", String(20), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("gate", Text, nullable=True),
    Column("request_id", String(32), nullable=True),
    Column("approved_by", String(256), nullable=True),
    Index("ix_model_transitions_version", "model_id", "version", "timestamp"),
)

# ---- serving: endpoints, traffic policies, deployment events (migration 0005) ----------------

# One row per endpoint; the traffic policy and batching config are JSON (serving.records).
# revision grows on every update so hosts notice a change with one integer comparison.
serving_endpoints = Table(
    "serving_endpoints",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("batching", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
)

# Append-only history of traffic changes; kept after the endpoint is deleted (no foreign key).
deployment_events = Table(
    "deployment_events",
    metadata,
    Column("event_id", String(32), primary_key=True),
    Column("endpoint", String(128), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("policy", Text, nullable=True),
    Index("ix_deployment_events_endpoint", "endpoint", "timestamp"),
)

# ---- monitoring: labels, monitors, runs, results, alerts (migration 0006) ---------------------

# A monitor's definition is one JSON document (monitoring.monitors.Monitor); last_run_at lets
# the scheduler pick due monitors with one indexed comparison.
monitors = Table(
    "monitors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("last_run_at", BigInteger, nullable=True),
)

# One row per execution of a monitor; result is the JSON of drift, quality and performance.
monitor_runs = Table(
    "monitor_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("monitor", String(128), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),
    Column("result", Text, nullable=False),
    Index("ix_monitor_runs_monitor", "monitor", "started_at"),
)

# One row per episode of a violated rule: opened once, touched while it persists, resolved when
# it clears; a new episode is a new row. delivery is the JSON of webhook attempts.
monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("alert_id", String(32), primary_key=True),
    Column("monitor", String(128), nullable=False),
    Column("rule", String(256), nullable=False),
    Column("status", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Float, nullable=True),
    Column("opened_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    Column("resolved_at", BigInteger, nullable=True),
    Column("run_id", String(32), nullable=False),
    Column("delivery", Text, nullable=False),
    Index("ix_monitor_alerts_open", "monitor", "rule", "status"),
)

# Actions an alert asked for ("run pipeline NAME"), consumed by the pipelines capability.
monitor_triggers = Table(
    "monitor_triggers",
    metadata,
    Column("trigger_id", String(32), primary_key=True),
    Column("alert_id", String(32), nullable=False),
    Column("monitor", String(128), nullable=False),
    Column("pipeline", String(256), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("claimed_at", BigInteger, nullable=True),
    Column("claimed_by", String(256), nullable=True),
    Index("ix_monitor_triggers_status", "status", "created_at"),
)

# ---- features: versioned definitions (migration 0007) -----------------------------------------

# Every applied version of every definition; spec is its canonical JSON and digest that JSON's
# sha256, so re-applying an unchanged definition is recognised without a new version.
feature_definitions = Table(
    "feature_definitions",
    metadata,
    Column("kind", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("spec", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
    PrimaryKeyConstraint("kind", "name", "version"),
)

# ---- pipelines: runs, steps, cache, schedules, triggers (migration 0008) -----------------------

# One row per pipeline run; target is how to load the pipeline again (``module:attr`` or
# ``/path/file.py:attr``) so resume and the scheduler can rebuild it; params is its JSON.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("pipeline", String(256), nullable=False),
    Column("target", String(2000), nullable=False),
    Column("status", String(20), nullable=False),
    Column("params", Text, nullable=False),
    Column("executor", String(256), nullable=False),
    Column("use_cache", Boolean, nullable=False),
    Column("trigger_id", String(32), nullable=True),
    Column("resumed_from", String(32), nullable=True),
    Column("tracking_run_id", String(32), nullable=True),
    Column("created_by", String(256), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_pipeline_runs_pipeline", "pipeline", "started_at"),
)

# One row per executed (or cached) step of a run; outputs is the JSON of the stored values and
# logs the digests of stdout, stderr and the traceback. The cache is the succeeded rows by key.
pipeline_steps = Table(
    "pipeline_steps",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("step", String(300), nullable=False),
    Column("status", String(20), nullable=False),
    Column("cache_key", String(64), nullable=True),
    Column("cached", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", BigInteger, nullable=True),
    Column("finished_at", BigInteger, nullable=True),
    Column("outputs", Text, nullable=True),
    Column("logs", Text, nullable=False),
    Column("tracking_run_id", String(32), nullable=True),
    Column("error", Text, nullable=True),
    Column("upstream", Text, nullable=True),
    PrimaryKeyConstraint("run_id", "step"),
    Index("ix_pipeline_steps_cache", "cache_key", "status"),
)

# Registered pipelines: how to load them and what triggers them (cron, new dataset versions,
# monitoring alerts); the cursors make each firing happen once.
pipeline_definitions = Table(
    "pipeline_definitions",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("target", String(2000), nullable=False),
    Column("schedule", String(128), nullable=True),
    Column("on_dataset", String(256), nullable=True),
    Column("on_alert", Boolean, nullable=False),
    Column("params", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("cron_cursor", BigInteger, nullable=True),
    Column("dataset_cursor", Integer, nullable=True),
)

# Trigger history: every firing, the run it started or why it started none.
pipeline_triggers = Table(
    "pipeline_triggers",
    metadata,
    Column("trigger_id", String(32), primary_key=True),
    Column("pipeline", String(256), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("detail", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("message", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_pipeline_triggers_pipeline", "pipeline", "created_at"),
)

# At most one running run per pipeline: the row is inserted to start and deleted at the end.
pipeline_locks = Table(
    "pipeline_locks",
    metadata,
    Column("pipeline", String(256), primary_key=True),
    Column("run_id", String(32), nullable=False),
    Column("owner", String(256), nullable=False),
    Column("acquired_at", BigInteger, nullable=False),
    # Renewed by the running engine; a lock not renewed within the lease is stale (0010).
    Column("heartbeat_at", BigInteger, nullable=True),
)

# ---- governance: users, tokens, roles, audit log (migration 0009) ------------------------------

# People and machines that call the server. password_hash is scrypt ("scrypt$n$r$p$salt$hash"),
# NULL for users who sign in with tokens only.
users = Table(
    "users",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("password_hash", String(256), nullable=True),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
)

# Opaque API tokens: only the sha256 of the secret is kept. kind is "api" or "bootstrap" (the
# one-time token that creates the first admin; its user is "").
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("user", String(256), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(256), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=True),
    Column("revoked_at", BigInteger, nullable=True),
    Column("last_used_at", BigInteger, nullable=True),
    Index("ix_api_tokens_user", "user"),
)

# A user's role on a resource: resource_type "project" (resource_name "") is the project-wide
# default, "experiment" (by id) and "model" (registered model name) override it.
role_bindings = Table(
    "role_bindings",
    metadata,
    Column("user", String(256), nullable=False),
    Column("resource_type", String(32), nullable=False),
    Column("resource_name", String(500), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(256), nullable=False),
    PrimaryKeyConstraint("user", "resource_type", "resource_name"),
)

# The append-only, hash-chained audit log: seq is dense (1, 2, ...) and hash covers every other
# column plus prev_hash, so an edited, deleted or reordered entry breaks the chain.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("token_id", String(32), nullable=True),
    Column("action", String(500), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("request_id", String(64), nullable=False),
    Column("client", String(256), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_time", "time"),
    Index("ix_audit_log_actor", "actor"),
)
