"""xfer: measure when a pretrained model is worth it, and the cheapest configuration that
reaches a target accuracy.

Importing ``xfer`` needs no Ray cluster and no MLflow server: the data, model and training
modules are plain PyTorch. Ray, Optuna and MLflow are imported only by the sweep layer.
"""

__version__ = "0.1.0"
