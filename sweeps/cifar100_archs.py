"""CIFAR-100: EfficientNet-B0 vs ResNet-50 vs AlexNet, all ImageNet-pretrained and fine-tuned,
with each model's training time next to its accuracy.

    python sweeps/cifar100_archs.py --preset cpu            # laptop: 64 px, 2,000 images, ~15 min
    ray job submit --working-dir . -- python sweeps/cifar100_archs.py   # the study's setting

Data: CIFAR-100's python-pickle archive (cifar-100-python.tar.gz) in --data-root, downloaded by
torchvision when online. 10,000 training images are held out for validation, as in the study;
the official 10,000-image test set is always used.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `ray job submit` runs from a copy

from xfer.sweep.driver import main  # noqa: E402
from xfer.sweep.sources import CifarData  # noqa: E402
from xfer.sweep.study import OfflinePretrain, Preset, Study  # noqa: E402

# Each model with the study's head: EfficientNet-B0 dense 256 -> 100; ResNet-50 three dense 384
# -> 100; AlexNet only its last layer replaced.
ARMS = {"efficientnet_b0": {"model": "efficientnet_b0", "head": "mlp256"},
        "resnet50": {"model": "resnet50", "head": "mlp3x384"},
        "alexnet": {"model": "alexnet", "head": "linear"}}
# SGD lr 1e-3 halved when val_loss plateaus; random crop (pad-and-shift) and flip; batch 8;
# 25 epochs; 32 px upsampled to 224 on the device.
STUDY_SETTING = {"init": "pretrained", "optimizer": "sgd", "lr": 1e-3, "schedule": "plateau",
                 "plateau_factor": 0.5, "augment": True, "batch_size": 8, "epochs": 25,
                 "image_size": 224}

STUDY = Study(
    name="cifar100_archs",
    default_preset="study",
    report_title="CIFAR-100: EfficientNet-B0 vs ResNet-50 vs AlexNet, accuracy and training time",
    presets={
        # Tests: generated CIFAR-100-format batches; the three heads on one tiny ResNet that xfer
        # pretrains offline (the real architectures are too slow for a 2-core CI machine).
        "smoke": Preset(
            space={"dataset_size": [200]},
            arms={name: {**arm, "model": "resnet10"} for name, arm in ARMS.items()},
            fixed={**STUDY_SETTING, "batch_size": 32, "epochs": 2, "image_size": 32, "lr": 0.05},
            data=CifarData("cifar100", val_size=100),
            pretrained=OfflinePretrain(model="resnet10", n=160, image_size=32, epochs=2,
                                       batch_size=32, lr=0.05),
            description="tests"),
        # A CPU: the three real models at 64 px on 2,000 training images for 3 epochs.
        "cpu": Preset(
            space={"dataset_size": [2000]}, arms=ARMS,
            fixed={**STUDY_SETTING, "batch_size": 32, "epochs": 3, "image_size": 64, "lr": 0.01},
            data=CifarData("cifar100"), pretrained="imagenet", description="a CPU"),
        "study": Preset(space={}, arms=ARMS, fixed=STUDY_SETTING, data=CifarData("cifar100"),
                        pretrained="imagenet", description="the study's setting"),
    },
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
