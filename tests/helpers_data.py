"""A tiny, easily learnable dataset in xfer's packed format, for training tests.

It is written exactly as ``xfer.data.tensors.load_packed`` reads it (``dataset.json`` plus
``packed/images_u8.npy`` N×H×W×3 uint8 and ``packed/labels_i64.npy``), so the tests exercise
the real loading path without the PDF generator. Each class is a coloured square at a
class-dependent position on a noisy background: a small CNN learns it in a few epochs.

``write_cifar`` and ``write_image_folder`` write the same kind of images in the real source
formats xfer packs: CIFAR's python pickles (optionally as the .tar.gz) and an ImageFolder tree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_COLOURS = np.array([[230, 40, 40], [40, 200, 40], [40, 60, 230], [230, 210, 40],
                     [200, 40, 200], [40, 210, 210], [250, 140, 20], [140, 140, 140]], dtype=np.uint8)


def write_blob_dataset(out: Path, *, n: int = 160, num_classes: int = 4, image_size: int = 32,
                       seed: int = 0, kind: str = "blobs", preset: str = "blobs") -> Path:
    """Write ``n`` images (classes cycled, so any prefix is balanced) and return ``out``."""
    if num_classes > len(_COLOURS):
        raise ValueError(f"at most {len(_COLOURS)} classes")
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % num_classes
    images = rng.integers(0, 60, size=(n, image_size, image_size, 3), dtype=np.uint8)
    side = image_size // 3
    for i, label in enumerate(labels):
        # Position depends on the class (quadrant) plus jitter; colour depends on the class.
        row = (label // 2) % 2 * (image_size // 2) + rng.integers(0, image_size // 2 - side + 1)
        col = label % 2 * (image_size // 2) + rng.integers(0, image_size // 2 - side + 1)
        images[i, row:row + side, col:col + side] = _COLOURS[label]
    out = Path(out)
    (out / "packed").mkdir(parents=True, exist_ok=True)
    np.save(out / "packed" / "images_u8.npy", images)
    np.save(out / "packed" / "labels_i64.npy", labels)
    meta = {"kind": kind, "preset": preset, "seed": seed, "n": n, "image_size": image_size,
            "families": [f"class{c}" for c in range(num_classes)], "generator_version": "test"}
    (out / "dataset.json").write_text(json.dumps(meta))
    return out


# --- real source formats: CIFAR python pickles and image folders -----------------------------

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def _class_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise plus a class-coloured square: learnable in one epoch, and every pixel random
    enough that a channel or row mix-up can't go unnoticed."""
    images = rng.integers(0, 60, size=(len(labels), size, size, 3), dtype=np.uint8)
    side = size // 2
    for i, label in enumerate(labels):
        colour = _COLOURS[label % len(_COLOURS)].astype(np.int64)
        if label >= len(_COLOURS):  # more classes than colours: vary the shade too
            colour = (colour * (1 + label // len(_COLOURS)) // 3) % 256
        row, col = rng.integers(0, size - side + 1, size=2)
        images[i, row:row + side, col:col + side] = colour
    return images


def write_cifar(root: Path, name: str = "cifar10", n_train_per_batch: int = 20, n_test: int = 20,
                archive: bool = False, *, num_classes: int | None = None, seed: int = 0,
                bytes_keys: bool = False) -> dict:
    """Write CIFAR's real python-pickle release under ``root``: ``cifar-10-batches-py/
    {data_batch_1..5, test_batch, batches.meta}`` or ``cifar-100-python/{train, test, meta}``,
    "data" N×3072 uint8 channel-planar (1024 R, 1024 G, 1024 B). With ``archive`` only the
    official ``.tar.gz`` of that folder is left. CIFAR-100's train file holds
    ``n_train_per_batch`` images. Returns the arrays written (NHWC) and the class names."""
    import pickle
    import shutil
    import tarfile

    cifar10 = name == "cifar10"
    num_classes = num_classes or (10 if cifar10 else 100)
    classes = CIFAR10_CLASSES[:num_classes] if cifar10 else [f"fine{c:02d}" for c in range(num_classes)]
    folder_name = "cifar-10-batches-py" if cifar10 else "cifar-100-python"
    train_files = [f"data_batch_{i}" for i in range(1, 6)] if cifar10 else ["train"]
    labels_key = "labels" if cifar10 else "fine_labels"
    rng = np.random.default_rng(seed)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)

    def batch(n: int, offset: int):
        labels = (np.arange(n) + offset) % num_classes  # every class in every batch
        labels = labels[rng.permutation(n)]
        images = _class_images(labels, 32, rng)
        data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel-planar rows
        entry = {key("batch_label"): "test batch", key(labels_key): labels.tolist(),
                 key("data"): np.ascontiguousarray(data),
                 key("filenames"): [f"img_{offset + i}.png" for i in range(n)]}
        if not cifar10:
            entry[key("coarse_labels")] = (labels // 5).tolist()
        return entry, images, labels

    folder = Path(root) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for i, file in enumerate(train_files):
        entry, images, labels = batch(n_train_per_batch, i)
        train_images.append(images)
        train_labels.append(labels)
        (folder / file).write_bytes(pickle.dumps(entry, protocol=2))
    entry, test_images, test_labels = batch(n_test, 0)
    (folder / ("test_batch" if cifar10 else "test")).write_bytes(pickle.dumps(entry, protocol=2))
    meta = ({key("label_names"): classes, key("num_cases_per_batch"): n_train_per_batch} if cifar10
            else {key("fine_label_names"): classes, key("coarse_label_names"): ["coarse"]})
    (folder / ("batches.meta" if cifar10 else "meta")).write_bytes(pickle.dumps(meta, protocol=2))
    archive_path = None
    if archive:
        archive_path = Path(root) / ("cifar-10-python.tar.gz" if cifar10 else "cifar-100-python.tar.gz")
        with tarfile.open(archive_path, "w:gz") as tar:
            tar.add(folder, arcname=folder_name)
        shutil.rmtree(folder)
    return {"train_images": np.concatenate(train_images), "train_labels": np.concatenate(train_labels),
            "test_images": test_images, "test_labels": test_labels, "classes": classes,
            "folder": folder, "archive": archive_path}


def write_image_folder(root: Path, classes=("cat", "dog", "fox"), per_class: int = 10,
                       size: int = 40, corrupt: bool = True, seed: int = 0) -> dict:
    """An ImageFolder tree: ``root/<class>/`` with PNG and JPEG files (alternating; sizes vary,
    not square, so resizing is exercised), the class visible as a coloured square. With
    ``corrupt``: a .jpg of garbage bytes, a PNG cut in half, a README.txt and a hidden file.
    Returns {"images": {relpath: pixels}, "corrupt": [relpaths], "non_images": [relpaths]}."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    written: dict[str, np.ndarray] = {}
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = _class_images(np.array([label]), size, rng)[0]
            pixels = np.concatenate([pixels, pixels[:, : size // 4]], axis=1)  # wider than tall
            ext = "png" if i % 2 == 0 else "jpg"
            rel = f"{cls}/{cls}_{i:03d}.{ext}"
            Image.fromarray(pixels).save(root / rel, **({"quality": 95} if ext == "jpg" else {}))
            written[rel] = pixels
    corrupt_files, non_images = [], []
    if corrupt:
        first, second = classes[0], classes[1 % len(classes)]
        (root / first / "broken.jpg").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        buffer = io.BytesIO()
        Image.fromarray(_class_images(np.array([1]), size, rng)[0]).save(buffer, format="PNG")
        (root / second / "truncated.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        (root / first / "README.txt").write_text("not an image")
        (root / second / ".hidden.png").write_bytes(b"ignored: hidden")
        corrupt_files = [f"{first}/broken.jpg", f"{second}/truncated.png"]
        non_images = [f"{first}/README.txt"]
    return {"images": written, "corrupt": corrupt_files, "non_images": non_images}


def pretend_official(monkeypatch, folder: Path, name: str = "cifar10") -> dict:
    """Make torchvision's published CIFAR md5 table (``train_list``, ``test_list``, ``meta``)
    list the md5s of the files generated in ``folder``, so xfer's check of "the official
    release" can be seen passing without the 170 MB archive. Returns the table it set."""
    import hashlib

    from torchvision import datasets

    loader = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in Path(folder).iterdir() if p.is_file()}
    monkeypatch.setattr(loader, "train_list", [[f, md5[f]] for f, _ in loader.train_list])
    monkeypatch.setattr(loader, "test_list", [[f, md5[f]] for f, _ in loader.test_list])
    monkeypatch.setattr(loader, "meta", {**loader.meta, "md5": md5[loader.meta["filename"]]})
    return md5
