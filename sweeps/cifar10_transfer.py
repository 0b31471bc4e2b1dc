"""CIFAR-10: an ImageNet-pretrained ResNet-50 against a small CNN trained from scratch, at 1%, 10%
and 100% of the training set. How much data is pretraining worth, and at what cost?

    python sweeps/cifar10_transfer.py --preset cpu          # laptop: ResNet-18 at 64 px, ~10 min
    ray job submit --working-dir . -- python sweeps/cifar10_transfer.py   # the study's setting

Data: CIFAR-10's python-pickle archive (cifar-10-python.tar.gz) in --data-root, downloaded there
by torchvision when online. 5,000 training images are held out for validation; dataset_size
counts training images (45,000 = 100%) and the official 10,000-image test set is always used.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `ray job submit` runs from a copy

from xfer.sweep.driver import main  # noqa: E402
from xfer.sweep.sources import CifarData  # noqa: E402
from xfer.sweep.study import OfflinePretrain, Preset, Study  # noqa: E402

# The study's arms. Transfer: ImageNet ResNet-50, 32 px upsampled x7 to 224 on the device, head
# GAP -> 1024 -> 512 -> 10, 6 epochs. Scratch: the Keras example CNN, up to 50 epochs with early
# stopping. Both: SGD lr 0.01 (momentum 0.9), batch 64, the lr constant for the first half of
# the transfer budget / the first 10 scratch epochs, then x exp(-0.1) per epoch (Keras' classic
# LearningRateScheduler recipe; the study did not state its constants).
TRANSFER = {"model": "resnet50", "init": "pretrained", "head": "gap_mlp", "image_size": 224,
            "epochs": 6, "schedule": "exp_decay", "lr_constant_epochs": 3}
SCRATCH = {"model": "small_cnn", "init": "scratch", "epochs": 50, "early_stopping_patience": 5,
           "schedule": "exp_decay", "lr_constant_epochs": 10}
STUDY_SETTING = {"optimizer": "sgd", "lr": 0.01, "batch_size": 64, "lr_decay_rate": 0.1}

STUDY = Study(
    name="cifar10_transfer",
    default_preset="study",
    report_title="CIFAR-10: pretrained ResNet-50 vs a small CNN from scratch, by training-set size",
    presets={
        # Tests: generated CIFAR-format batches, a tiny ResNet pretrained offline on PDF plots.
        "smoke": Preset(
            space={"dataset_size": [40, 80]},
            arms={"transfer": {**TRANSFER, "model": "resnet10", "image_size": 64, "epochs": 2,
                               "lr_constant_epochs": 1},
                  "scratch": {**SCRATCH, "epochs": 3, "early_stopping_patience": 2,
                              "lr_constant_epochs": 1}},
            fixed={**STUDY_SETTING, "batch_size": 16},
            data=CifarData("cifar10", val_size=40),
            pretrained=OfflinePretrain(model="resnet10", n=160, image_size=32, epochs=2,
                                       batch_size=32, lr=0.05),
            scheduler="fifo", description="tests"),
        # A CPU: ImageNet ResNet-18 at 64 px (x2) for 3 epochs vs the scratch CNN, at 1% and 10%.
        "cpu": Preset(
            space={"dataset_size": [450, 4500]},
            arms={"transfer": {**TRANSFER, "model": "resnet18", "image_size": 64, "epochs": 3,
                               "lr_constant_epochs": 2},
                  "scratch": {**SCRATCH, "epochs": 15, "early_stopping_patience": 3,
                              "lr_constant_epochs": 5}},
            fixed=STUDY_SETTING, data=CifarData("cifar10"), pretrained="imagenet",
            scheduler="fifo", description="a CPU"),
        # The study: 1%, 10%, 100% of the 45,000 training images. FIFO, not ASHA: the arms'
        # budgets differ (6 vs up to 50 epochs), so no rung compares like with like.
        "study": Preset(
            space={"dataset_size": [450, 4500, 45000]},
            arms={"transfer": TRANSFER, "scratch": SCRATCH},
            fixed=STUDY_SETTING, data=CifarData("cifar10"), pretrained="imagenet",
            scheduler="fifo", description="the study's setting"),
    },
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
