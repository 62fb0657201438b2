"""Real photographs available offline for the demo checkpoint, minus the held-out demo photos.

Nothing is downloaded: the photos come from installed packages (scikit-image, scikit-learn, matplotlib wheels) and
Debian's ``libjxl-testdata`` (``apt-get install -y libjxl-testdata``). Photos whose package is missing are skipped
and listed. The five demo photos of :func:`sgjnd.samples.sample_photos` are never collected: they are the held-out
test set of the demo model. The big libjxl ``flower.png`` (2268×1512) contributes four crops named ``flower__cN``,
one split group (see :data:`sgjnd.labels.proxy.GROUP_SEPARATOR`).

Run ``python -m sgjnd.train.photos DEST`` to write the training photos into ``DEST`` as PNG, or with
``--tile 320 --tile-stride 160`` overlapping 320×320 tiles of them (up to ``--max-tiles`` per photo, named
``<photo>__tRRR_CCC``): more labelled items, each with its own proxy JND, for the same photos.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sgjnd.fileio import write_atomic
from sgjnd.samples import SAMPLE_PHOTOS

LIBJXL_TESTDATA = Path("/usr/share/libjxl-testdata")


@dataclass(frozen=True)
class OfflinePhoto:
    """One photo: a name for the copy, where it is (package + relative path), its licence, and crops to take.

    Attributes:
        name: stem of the PNG written.
        package: importable module whose folder holds it, or ``libjxl-testdata`` (a Debian package).
        path: the file, relative to that folder.
        licence: distribution terms as stated by the package.
        crops: (y, x, h, w) boxes; empty means the whole photo.
    """

    name: str
    package: str
    path: str
    licence: str
    crops: tuple[tuple[int, int, int, int], ...] = ()


TRAINING_PHOTOS: tuple[OfflinePhoto, ...] = (
    OfflinePhoto("motorcycle", "skimage", "data/motorcycle_left.png", "Middlebury 2014 (licence not stated)"),
    OfflinePhoto("camera", "skimage", "data/camera.png", "CC0 (grayscale)"),
    OfflinePhoto("brick", "skimage", "data/brick.png", "CC0 (grayscale texture)"),
    OfflinePhoto("grass", "skimage", "data/grass.png", "CC0 (grayscale texture)"),
    OfflinePhoto("gravel", "skimage", "data/gravel.png", "CC0 (grayscale texture)"),
    OfflinePhoto("china", "sklearn", "datasets/images/china.jpg", "CC-BY 2.0"),
    OfflinePhoto("flower_sk", "sklearn", "datasets/images/flower.jpg", "CC-BY 2.0"),
    OfflinePhoto("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "public domain (US Navy)"),
    OfflinePhoto("flower", "libjxl-testdata", "jxl/flower/flower.png", "BSD-3 (JPEG XL authors)",
                 crops=((0, 0, 480, 640), (0, 1400, 480, 640), (800, 300, 480, 640), (1000, 1600, 480, 640))),
    OfflinePhoto("hdr_room", "libjxl-testdata", "jxl/hdr_room.png", "BSD-3 (JPEG XL authors)"),
    OfflinePhoto("keong_macan", "libjxl-testdata", "external/wesaturate/500px/cvo9xd_keong_macan_srgb8.png", "CC0"),
    OfflinePhoto("riaphotographs", "libjxl-testdata", "external/wesaturate/500px/tmshre_riaphotographs_srgb8.png",
                 "CC0"),
    OfflinePhoto("bliznaca", "libjxl-testdata", "external/wesaturate/500px/u76c0g_bliznaca_srgb8.png", "CC0"),
)
"""Training photos of the demo model. The held-out demo photos (``sgjnd.samples.SAMPLE_PHOTOS``) are not here."""

HELD_OUT: tuple[str, ...] = tuple(p.file for p in SAMPLE_PHOTOS)


def locate(photo: OfflinePhoto) -> Path | None:
    """The photo's file, or None when its package is not installed."""
    if photo.package == "libjxl-testdata":
        path = LIBJXL_TESTDATA / photo.path
    else:
        try:
            module = importlib.import_module(photo.package)
        except ImportError:
            return None
        path = Path(str(module.__file__)).parent / photo.path
    return path if path.is_file() else None


def tiles(image: np.ndarray, size: int, stride: int, cap: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``cap`` size×size tiles at ``stride``, spread evenly as the runtime's patch grid."""
    from sgjnd.runtime.patches import patch_grid

    if min(image.shape[:2]) < size:
        return []
    grid = patch_grid(image.shape[0], image.shape[1], size, stride=stride, max_patches=cap)
    return [(int(y), int(x)) for y, x in grid.coords.tolist()]


def collect(dest: Path, photos: Sequence[OfflinePhoto] = TRAINING_PHOTOS, *, tile: int | None = None,
            tile_stride: int | None = None, max_tiles: int = 6) -> tuple[list[Path], list[str]]:
    """Write the available photos (and crops) as PNG into ``dest``.

    Args:
        dest: folder to write into.
        photos: which photos.
        tile: instead of whole photos, write tile×tile crops of each (``<name>__tRRR_CCC.png``, same split group):
            more, smaller labelled items for the same photos.
        tile_stride: step between tiles (default: ``tile``).
        max_tiles: most tiles per photo, spread evenly.

    Returns:
        ``(written, missing)``: the PNG files, and the photos not found with the package to install.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    for photo in photos:
        if Path(photo.path).name in HELD_OUT:  # never let a held-out demo photo into training
            continue
        path = locate(photo)
        if path is None:
            missing.append(f"{photo.name} ({photo.package}: {photo.path})")
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            missing.append(f"{photo.name} (unreadable: {path})")
            continue
        boxes = photo.crops or ((0, 0, image.shape[0], image.shape[1]),)
        for i, (y, x, h, w) in enumerate(boxes):
            name = f"{photo.name}__c{i}" if photo.crops else photo.name
            crop = np.ascontiguousarray(image[y:y + h, x:x + w])
            pieces = [(name, crop)]
            if tile:
                sep = "_" if photo.crops else "__"  # one "__" per name: the split group is the photo
                pieces = [(f"{name}{sep}t{ty:03d}_{tx:03d}", np.ascontiguousarray(crop[ty:ty + tile, tx:tx + tile]))
                          for ty, tx in tiles(crop, tile, tile_stride or tile, max_tiles)]
            for piece_name, piece in pieces:
                ok, buf = cv2.imencode(".png", piece)
                if not ok:
                    missing.append(f"{piece_name} (PNG encoding failed)")
                    continue
                target = dest / f"{piece_name}.png"
                write_atomic(target, buf.tobytes())
                written.append(target)
    return written, missing


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sgjnd.train.photos DEST``: collect the training photos."""
    parser = argparse.ArgumentParser(prog="python -m sgjnd.train.photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="folder to write the PNG photos into")
    parser.add_argument("--tile", type=int, default=None, help="write TILE x TILE crops instead of whole photos")
    parser.add_argument("--tile-stride", type=int, default=None, help="step between tiles (default: TILE)")
    parser.add_argument("--max-tiles", type=int, default=6, help="most tiles per photo, spread evenly")
    args = parser.parse_args(argv)
    written, missing = collect(args.dest, tile=args.tile, tile_stride=args.tile_stride, max_tiles=args.max_tiles)
    for path in written:
        print(path)
    for item in missing:
        print(f"missing: {item}", file=sys.stderr)
    print(f"{len(written)} photo(s) in {args.dest}; held out: {', '.join(HELD_OUT)}", file=sys.stderr)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
