"""A smoke-scale forecast sweep for tests/test_forecast_sweep.py: the pdf_grid forecast preset's
shape (both inits at four dataset sizes, the backbones scored first, a forecast at a larger
size) with the smoke preset's tiny ResNet at 32 px, so the real path runs in about a minute."""

import sys

from xfer.sweep.driver import main
from xfer.sweep.sources import PdfData
from xfer.sweep.study import SMOKE_PRETRAIN, Preset, Study

STUDY = Study(
    name="forecast_smoke",
    report_title="Forecast smoke: a learning curve from four small sizes", default_preset="smoke",
    presets={
        "smoke": Preset(
            space={"init": ["scratch", "pretrained"], "epochs": [1, 2], "dataset_size": [32, 48, 64, 96]},
            fixed={"model": "resnet10", "batch_size": 16, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9},
            data=PdfData(preset="seed", image_size=32, test_size=200),
            pretrained=SMOKE_PRETRAIN, scheduler="fifo", epoch_milestones=True,
            forecast_at=(192,), score_transferability=True, description="tests"),
    },
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
