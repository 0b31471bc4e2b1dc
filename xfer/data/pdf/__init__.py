"""The PDF-plot dataset: images of plotted probability densities, eight families.

- ``families``: the eight families, their parameter spaces, and the ``seed`` / ``varied`` presets
- ``render``:   a fast rasteriser that draws one density plot the way matplotlib would
- ``generate``: deterministic, parallel, atomic dataset writer (PNGs, metadata, packed cache)
- ``audit``:    which families no classifier can tell apart, and the Bayes accuracy ceiling
"""
