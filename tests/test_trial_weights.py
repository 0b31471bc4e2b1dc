"""Trials on a node without the driver's weights file load the same bytes from the object store."""

from __future__ import annotations

import hashlib

import numpy as np

from xfer.sweep.trial import SharedData, local_weights, shareable_weights


def shared(files: dict) -> SharedData:
    return SharedData(images=np.zeros((1, 4, 4, 3), np.uint8), labels=np.zeros(1, np.int64),
                      meta={}, weight_files=files)


def test_a_driver_side_file_missing_on_this_node_is_written_from_the_shared_bytes(tmp_path):
    data = b"weights bytes" * 100
    missing = str(tmp_path / "driver-cache" / "offline-resnet10.pt")  # not on "this node"
    path = local_weights(missing, shared({missing: data}))
    assert path != missing and path.endswith("offline-resnet10.pt")
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).digest() == hashlib.sha256(data).digest()
    assert local_weights(missing, shared({missing: data})) == path  # written once per node


def test_a_readable_file_imagenet_and_scratch_pass_through(tmp_path):
    present = tmp_path / "w.pt"
    present.write_bytes(b"x")
    assert local_weights(str(present), shared({str(present): b"other"})) == str(present)
    assert local_weights("imagenet", shared({})) == "imagenet"
    assert local_weights(None, shared({})) is None


def test_a_pinned_source_keeps_its_pin_and_only_files_are_shared(tmp_path):
    data = b"pinned"
    pin = hashlib.sha256(data).hexdigest()
    present = tmp_path / "w.pt"
    present.write_bytes(data)
    source = f"{present}#sha256={pin}"
    files = shareable_weights([source, "imagenet", "s3://bucket/key.pt", None])
    assert files == {source: data}
    moved = source.replace(str(tmp_path), str(tmp_path / "gone"))
    path = local_weights(moved, shared({moved: data}))
    assert path.endswith(f"w.pt#sha256={pin}") and "gone" not in path
