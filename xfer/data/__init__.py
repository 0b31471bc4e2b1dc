"""Datasets as packed uint8 tensors: the PDF-plot generator and its audit, splits, loaders.

Generation (``xfer.data.pdf``) needs only numpy, scipy and Pillow; loading into tensors
(``xfer.data.tensors``) needs torch. Nothing here imports Ray or MLflow.
"""
