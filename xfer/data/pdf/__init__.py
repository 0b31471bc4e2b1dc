"""The PDF-plot dataset: images of plotted probability densities, eight families.

- ``families``: the eight families, their parameter spaces, and the ``seed`` / ``varied`` presets
- ``render``:   a fast rasteriser that draws one density plot the way matplotlib would
- ``generate``: deterministic, parallel, atomic dataset writer (PNGs, metadata, packed cache)
- ``audit``:    which families no classifier can tell apart (identical densities, and shapes
                equal up to location and scale), and the Bayes ceiling of each rendering
- ``separability``: the audit's empirical check, a logistic regression per pair of classes on
                freshly rendered pixels
"""
