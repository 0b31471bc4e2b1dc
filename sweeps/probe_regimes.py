"""ResNet-152: linear probe vs last block vs full fine-tune, pretrained vs scratch, and how well
each regime's features separate the classes at an early, a middle and a late stage (t-SNE, or
UMAP with `pip install 'xfer[umap]'`, plus silhouette scores).

    python sweeps/probe_regimes.py --preset cpu             # laptop: ResNet-18, 2,000 images
    ray job submit --working-dir . -- python sweeps/probe_regimes.py   # the study's setting
    python sweeps/probe_regimes.py --data DIR               # any image folder or xfer dataset

Data: CIFAR-10 by default (see sweeps/cifar10_transfer.py), or --data.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `ray job submit` runs from a copy

from xfer.sweep.driver import main  # noqa: E402
from xfer.sweep.sources import CifarData  # noqa: E402
from xfer.sweep.study import OfflinePretrain, Preset, Study  # noqa: E402

REGIMES = {"train_layers": ["head", "last_block", "all"], "init": ["pretrained", "scratch"]}
# The study did not give its recipe: SGD lr 0.01 (momentum 0.9), batch 64, 10 epochs, cosine
# to zero, 32 px upsampled to 224. One budget for all, so ASHA has no rung to stop at: FIFO.
STUDY_SETTING = {"model": "resnet152", "optimizer": "sgd", "lr": 0.01, "batch_size": 64,
                 "epochs": 10, "schedule": "cosine", "image_size": 224, "augment": True,
                 "embeddings": "tsne"}

STUDY = Study(
    name="probe_regimes",
    default_preset="study",
    report_title="ResNet-152: linear probe vs last block vs full fine-tune",
    presets={
        "smoke": Preset(
            space={**REGIMES, "dataset_size": [80]},
            fixed={**STUDY_SETTING, "model": "resnet10", "epochs": 2, "batch_size": 16,
                   "image_size": 32, "lr": 0.05},
            data=CifarData("cifar10", val_size=40),
            pretrained=OfflinePretrain(model="resnet10", n=160, image_size=32, epochs=2,
                                       batch_size=32, lr=0.05),
            scheduler="fifo", description="tests"),
        "cpu": Preset(
            space={**REGIMES, "dataset_size": [2000]},
            fixed={**STUDY_SETTING, "model": "resnet18", "epochs": 3, "image_size": 64},
            data=CifarData("cifar10"), pretrained="imagenet", scheduler="fifo", description="a CPU"),
        "study": Preset(space=REGIMES, fixed=STUDY_SETTING, data=CifarData("cifar10"),
                        pretrained="imagenet", scheduler="fifo", description="the study's setting"),
    },
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
