"""Model registry: registered models, versions, aliases and stages, evaluation gates,
approvals, lineage and model cards."""
