"""Any image folder: ResNet-18, VGG-19 and Inception V3, each trained from scratch (all layers)
and fine-tuned (ImageNet weights, only the classifier trained), with precision, recall, F1 and
one-vs-rest AUC-ROC.

    python sweeps/folder_finetune.py --data DIR --preset cpu      # laptop
    ray job submit --working-dir . -- python sweeps/folder_finetune.py --data DIR

Data: --data DIR, one sub-folder per class (torchvision's ImageFolder layout), split 80:10:10
stratified. Files that are not images, or do not decode, are reported once by name and skipped;
their count is the run param data_skipped_files.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `ray job submit` runs from a copy

from xfer.sweep.driver import main  # noqa: E402
from xfer.sweep.sources import FolderData  # noqa: E402
from xfer.sweep.study import OfflinePretrain, Preset, Study  # noqa: E402

# Scratch trains every layer; fine-tuned starts from ImageNet and trains only the new classifier
# layer (train_layers=head). Inception V3 is fed 299 px (resized on the device).
CONDITIONS = {"scratch": {"init": "scratch", "train_layers": "all"},
              "finetuned": {"init": "pretrained", "train_layers": "head"}}
# Adam lr 1e-4, batch 32, 50 epochs; random rotations (up to 20 degrees), shifts and flips.
STUDY_SETTING = {"optimizer": "adam", "lr": 1e-4, "batch_size": 32, "epochs": 50, "augment": True,
                 "rotate_degrees": 20.0}

STUDY = Study(
    name="folder_finetune",
    default_preset="study",
    report_title="Image folder: ResNet-18, VGG-19 and Inception V3, scratch vs fine-tuned",
    presets={
        # Tests: a generated folder at 32 px, a tiny ResNet pretrained offline on PDF plots.
        "smoke": Preset(
            space={"model": ["resnet10"]}, arms=CONDITIONS,
            fixed={**STUDY_SETTING, "epochs": 2, "batch_size": 16, "lr": 1e-3},
            data=FolderData(image_size=32),
            pretrained=OfflinePretrain(model="resnet10", n=160, image_size=32, epochs=2,
                                       batch_size=32, lr=0.05),
            description="tests"),
        # A CPU: ResNet-18 only, at 64 px, 5 epochs.
        "cpu": Preset(
            space={"model": ["resnet18"]}, arms=CONDITIONS,
            fixed={**STUDY_SETTING, "epochs": 5, "image_size": 64, "lr": 1e-3},
            data=FolderData(image_size=64), pretrained="imagenet", description="a CPU"),
        "study": Preset(
            space={"model": ["resnet18", "vgg19", "inception_v3"]}, arms=CONDITIONS,
            fixed=STUDY_SETTING, data=FolderData(image_size=224), pretrained="imagenet",
            description="the study's setting"),
    },
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
