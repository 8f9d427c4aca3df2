"""Feature store: definitions, a versioned registry of them, offline and online retrieval.

- :mod:`~loopml.features.definitions`: Entity, sources, FeatureView, OnDemandFeatureView,
  FeatureService (``PostgresSource`` lives in :mod:`~loopml.features.postgres`).
- :mod:`~loopml.features.registry`: versioned ``apply`` with diffs and breaking-change refusal;
  ``resolve_service(name)`` / ``resolve_views(refs)`` / ``definitions()`` rebuild the live
  objects from the stored specs (:mod:`~loopml.features.rebuild`).
- :mod:`~loopml.features.offline`: point-in-time ``get_historical_features`` in DuckDB;
  :mod:`~loopml.features.training` registers a result as a dataset version with its lineage.
- :mod:`~loopml.features.materialize`: ``materialize``/``materialize_incremental`` (vectorised,
  :mod:`~loopml.features.bulk`), ``push`` (online store and the offline
  :mod:`~loopml.features.push_log`), ``get_online_features``.
- Online stores: :mod:`~loopml.features.online` (contract, ``open_online_store``), SQLite,
  Redis and PostgreSQL backends.

>>> from loopml.features.definitions import Entity
>>> Entity("driver", join_keys="driver_id").join_keys
('driver_id',)
"""
