"""Feature store: definitions, a versioned registry of them, offline and online retrieval.

>>> from loopml.features.definitions import Entity
>>> Entity("driver", join_keys="driver_id").join_keys
('driver_id',)
"""
