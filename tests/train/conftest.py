"""A small proxy-label dataset from real photos (written by hand, so no oracle is needed) and a training config."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest
import torch

from sgjnd.data.datasets import PROXY_COLUMNS
from sgjnd.train.config import TrainConfig, config_from_dict

# (name, photo index, crop y, crop x, proxy JND): two crops of one photo share the group "coffee".
IMAGES = (("coffee__a", 2, 40, 60, 28), ("coffee__b", 2, 200, 300, 34), ("astronaut", 0, 100, 200, 31),
          ("chelsea", 1, 60, 120, 24), ("rocket", 3, 100, 250, 40))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the tiny model gains nothing from two, and CI machines are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def proxy_csv(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """labels.csv with five 128x128 crops of real photos and their (made-up) proxy JNDs."""
    folder = tmp_path_factory.mktemp("proxy")
    lines = ["# PROXY LABELS from the test oracle (hand-written), NOT human data", ",".join(PROXY_COLUMNS)]
    for name, index, y, x, jnd in IMAGES:
        image = cv2.imread(str(photos[index]), cv2.IMREAD_COLOR)
        assert image is not None
        cv2.imwrite(str(folder / f"{name}.png"), image[y:y + 128, x:x + 128])
        lines.append(f"image,{name},{name.split('__')[0]},{name}.png,128,128,,,,test,1,{jnd},10")
        lines.append(f"patch,{name},{name.split('__')[0]},{name}.png,128,128,0,64,64,test,1,{jnd - 2},10")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder / "labels.csv"


@pytest.fixture
def tiny_config() -> Callable[..., TrainConfig]:
    """make(proxy_csv, out, **changes) -> a fast TrainConfig (see :func:`make_tiny_config`)."""
    return make_tiny_config


def make_tiny_config(proxy_csv: Path, out: Path, **changes: object) -> TrainConfig:
    """A fast config for sgjnd_tiny (64 px patches): 2 images x 2 QFs x 2 patches per step, validation on chelsea."""
    data = {
        "data": {"path": str(proxy_csv), "val_groups": ["chelsea"], "exclude": ["rocket"]},
        "model": {"name": "sgjnd_tiny"},
        "optim": {"lr_head": 1e-3, "lr_backbone": 1e-3},
        "sampling": {"images_per_batch": 2, "patches_per_image": 2, "qfs_per_image": 2, "steps_per_epoch": 2,
                     "qfs": list(range(10, 91, 10))},
        "validation": {"strategy": "bisect", "max_patches": 1, "min_qf": 10, "max_qf": 60, "patience": 3},
        "epochs": 2,
        "threads": 1,
        "output": str(out),
    }
    config = config_from_dict(json.loads(json.dumps(data)))
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]
