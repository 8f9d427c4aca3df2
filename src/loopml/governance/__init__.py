"""Governance: users and API tokens (:mod:`.identity`), roles per experiment and registered model
(:mod:`.roles`) and the hash-chained audit log (:mod:`.audit`)."""
