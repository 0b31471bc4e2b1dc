"""Where xfer talks to MLflow: the orchestration layer's tracking helpers.

The pure core (data, models, weights, train) never imports MLflow; it calls into this package
lazily, only when a user hands it an MLflow URI. Importing ``xfer.tracking`` itself is free:
each submodule imports MLflow (about 1.5 s) when it is imported.
"""
