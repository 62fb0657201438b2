"""Real photographs available offline for the demo checkpoint, split by source into training and held-out photos.

Nothing is downloaded: the photos come from installed packages (scikit-image, scikit-learn, matplotlib wheels) and
Debian packages (``apt-get install -y libjxl-testdata plasma-workspace-wallpapers mate-backgrounds
lomiri-wallpapers-16.04 lomiri-wallpapers-20.04``: the photographs among their wallpapers, picked by eye from the
artwork; each with its author and licence from the package's metadata or copyright file). Photos whose package is
missing are skipped and listed.

**Held out by source** (:data:`HELD_OUT_PHOTOS`, 20 photos by 16 photographers): the five demo photos of
:func:`sgjnd.samples.sample_photos`, the twelve photographs of ``mate-backgrounds`` and three of
``plasma-workspace-wallpapers``. No photographer of a held-out photo has a photo in :data:`TRAINING_PHOTOS`, so a model
is never selected or trained on another shot of a held-out scene or style (tested). Near-duplicates (the same
picture in two packages or sizes) are caught by a difference hash when collecting. The big libjxl ``flower.png``
(2268×1512) contributes four crops named ``flower__cN``, one split group (see
:data:`sgjnd.labels.proxy.GROUP_SEPARATOR`).

Run ``python -m sgjnd.train.photos DEST [--set heldout]`` to write the training (or held-out) photos into ``DEST``
as PNG, or with
``--tile 320 --tile-stride 160`` overlapping 320×320 tiles of them (up to ``--max-tiles`` per photo, named
``<photo>__tRRR_CCC``): more labelled items, each with its own proxy JND, for the same photos; ``--scales 1,2,4``
adds copies shrunk by those factors (the same scenes at the resolutions people also upload).
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
DEBIAN_ROOTS: dict[str, Path] = {
    "libjxl-testdata": LIBJXL_TESTDATA,
    "plasma-workspace-wallpapers": Path("/usr/share/wallpapers"),
    "mate-backgrounds": Path("/usr/share/backgrounds/mate"),
    "lomiri-wallpapers-16.04": Path("/usr/share/backgrounds"),
    "lomiri-wallpapers-20.04": Path("/usr/share/backgrounds"),
}
"""Where each Debian package that provides photos installs them."""


@dataclass(frozen=True)
class OfflinePhoto:
    """One photo: a name for the copy, where it is (package + relative path), its licence, and crops to take.

    Attributes:
        name: stem of the PNG written.
        package: importable module whose folder holds it, or ``libjxl-testdata`` (a Debian package).
        path: the file, relative to that folder.
        licence: distribution terms as stated by the package.
        crops: (y, x, h, w) boxes; empty means the whole photo.
        source: who took it (or the collection it comes from): the unit of the train / held-out split; empty
            means the package.
    """

    name: str
    package: str
    path: str
    licence: str
    crops: tuple[tuple[int, int, int, int], ...] = ()
    source: str = ""

    @property
    def origin(self) -> str:
        """The split unit: :attr:`source`, else the package."""
        return self.source or self.package


def _plasma(name: str, author: str, licence: str = "LGPL-3", size: str = "2560x1600") -> OfflinePhoto:
    return OfflinePhoto(name.lower(), "plasma-workspace-wallpapers", f"{name}/contents/images/{size}.jpg",
                        f"{licence} ({author}; KDE, Debian plasma-workspace-wallpapers)", source=author)


def _mate(name: str, author: str) -> OfflinePhoto:
    return OfflinePhoto(f"mate_{name.lower()}", "mate-backgrounds", f"nature/{name}.jpg",
                        f"GPL-2+ ({author}; Debian mate-backgrounds)", source=author)


def _lomiri(file: str, author: str, licence: str, release: str = "16.04") -> OfflinePhoto:
    return OfflinePhoto(file.split("_by_")[0].lower(), f"lomiri-wallpapers-{release}", file,
                        f"{licence} ({author}; Ubuntu wallpaper contest, Debian lomiri-wallpapers-{release})",
                        source=author)


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
    _plasma("ColdRipple", "Risto Saukonpää"),
    _plasma("DarkestHour", "Risto Saukonpää"),
    _plasma("Kite", "Risto Saukonpää"),
    _plasma("OneStandsOut", "Risto Saukonpää"),
    _plasma("Path", "Risto Saukonpää"),
    _plasma("summer_1am", "Risto Saukonpää"),
    _plasma("FallenLeaf", "Martin Klapetek"),
    _plasma("Grey", "Sigi Sagi"),
    _plasma("Volna", "Nikita Babin", "CC-BY-SA-4.0", "5120x2880"),
    _lomiri("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
    _lomiri("Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
    _lomiri("Picture_0B_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
    _lomiri("Picture_1A_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
    _lomiri("Wine_by_Jakkub_Mede.jpg", "Jakub Mede", "CC-BY-4.0"),
    _lomiri("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
    _lomiri("Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-3.0", "20.04"),
)
"""Training photos of the demo model (training and validation are split from these by :attr:`OfflinePhoto.origin`
groups at training time). No held-out photo, and no photographer of one, is here."""

HELD_OUT_PHOTOS: tuple[OfflinePhoto, ...] = (
    *(OfflinePhoto(Path(p.file).stem, "skimage", f"data/{p.file}", p.licence, source=p.source) for p in SAMPLE_PHOTOS),
    _mate("Aqua", "Charles Barbin"),
    _mate("Garden", "Charles Barbin"),
    _mate("LadyBird", "Charles Barbin"),
    _mate("TwoWings", "Charles Barbin"),
    _mate("YellowFlower", "Charles Barbin"),
    _mate("Blinds", "Lennart Poettering"),
    _mate("Dune", "Marco Cogoni"),
    _mate("FreshFlower", "Jens Ansorg"),
    _mate("GreenMeadow", "Timothy Schellhase"),
    _mate("RainDrops", "blackcombwhistler07"),
    _mate("Storm", "Sergey Nazarov"),
    _mate("Wood", "Jean-François Fortin Tam"),
    _plasma("BytheWater", "Maciej Wiklo"),
    _plasma("ColorfulCups", "Dmitri Popov"),
    _plasma("EveningGlow", "Ian Hex"),
)
"""Photos never used for training, validation or model selection: the evaluation set of the demo model."""

HELD_OUT: tuple[str, ...] = tuple(p.file for p in SAMPLE_PHOTOS)
"""File names of the demo photos (also in :data:`HELD_OUT_PHOTOS`), refused by :func:`collect` for training."""

PHOTO_SETS: dict[str, tuple[OfflinePhoto, ...]] = {"train": TRAINING_PHOTOS, "heldout": HELD_OUT_PHOTOS}


def locate(photo: OfflinePhoto) -> Path | None:
    """The photo's file, or None when its package is not installed."""
    if photo.package in DEBIAN_ROOTS:
        path = DEBIAN_ROOTS[photo.package] / photo.path
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


def difference_hash(image: np.ndarray) -> int:
    """A 64-bit difference hash of ``image`` (9x8 grayscale, left < right per pixel): close for the same picture at
    other sizes or JPEG qualities, far for different pictures."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


DUPLICATE_BITS = 3
"""Hashes at most this many bits apart are the same picture (measured: three wallpapers at 1280x800 and as JPEG
q30 differ from their 2560x1600 originals by 0-1 bits; the nearest two different photos of the corpus by 7)."""


def collect(dest: Path, photos: Sequence[OfflinePhoto] = TRAINING_PHOTOS, *, tile: int | None = None,
            tile_stride: int | None = None, max_tiles: int = 6, heldout: bool = False,
            scales: Sequence[int] = (1,)) -> tuple[list[Path], list[str]]:
    """Write the available photos (and crops) as PNG into ``dest``.

    A photo that is a near-duplicate of one already written (:func:`difference_hash`) is skipped and listed.

    Args:
        dest: folder to write into.
        photos: which photos.
        heldout: the photos are the held-out set: the demo photos among them are written too (for training they
            are refused).
        tile: instead of whole photos, write tile×tile crops of each (``<name>__tRRR_CCC.png``, same split group):
            more, smaller labelled items for the same photos.
        tile_stride: step between tiles (default: ``tile``).
        max_tiles: most tiles per photo (and scale), spread evenly.
        scales: also write each photo shrunk by these integer factors (area interpolation), named
            ``<photo>__s<k>...``; 1 is the photo as it is.

    Returns:
        ``(written, missing)``: the PNG files, and the photos not found with the package to install.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written, missing = [], []
    seen: dict[int, str] = {}
    for photo in photos:
        if not heldout and Path(photo.path).name in HELD_OUT:  # never let a held-out demo photo into training
            continue
        path = locate(photo)
        if path is None:
            missing.append(f"{photo.name} ({photo.package}: {photo.path})")
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            missing.append(f"{photo.name} (unreadable: {path})")
            continue
        digest = difference_hash(image)
        twin = next((name for h, name in seen.items() if bin(h ^ digest).count("1") <= DUPLICATE_BITS), None)
        if twin is not None:
            missing.append(f"{photo.name} (a near-duplicate of {twin}: skipped)")
            continue
        seen[digest] = photo.name
        boxes = photo.crops or ((0, 0, image.shape[0], image.shape[1]),)
        for i, (y, x, h, w) in enumerate(boxes):
            crop = np.ascontiguousarray(image[y:y + h, x:x + w])
            for scale in scales:
                scaled = crop
                if scale != 1:  # the same scene at a lower resolution: other textures, a label of its own
                    size = (round(crop.shape[1] / scale), round(crop.shape[0] / scale))
                    scaled = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
                written += _write_pieces(dest, _piece_name(photo, i, scale), scaled, tile, tile_stride, max_tiles,
                                         missing)
    return written, missing


def _piece_name(photo: OfflinePhoto, crop: int, scale: int) -> str:
    """``photo``, ``photo__c0``, ``photo__s2``, ``photo__c0_s2``: one ``__`` per name, so the split group is the
    photo whatever the crop or scale."""
    parts = ([f"c{crop}"] if photo.crops else []) + ([f"s{scale}"] if scale != 1 else [])
    return f"{photo.name}__{'_'.join(parts)}" if parts else photo.name


def _write_pieces(dest: Path, name: str, image: np.ndarray, tile: int | None, tile_stride: int | None,
                  max_tiles: int, missing: list[str]) -> list[Path]:
    """Write ``image`` (or its tiles, ``<name>__tRRR_CCC``) as PNG; failures are appended to ``missing``."""
    pieces = [(name, image)]
    if tile:
        sep = "_" if "__" in name else "__"  # one "__" per name: the split group is the photo
        pieces = [(f"{name}{sep}t{ty:03d}_{tx:03d}", np.ascontiguousarray(image[ty:ty + tile, tx:tx + tile]))
                  for ty, tx in tiles(image, tile, tile_stride or tile, max_tiles)]
    written = []
    for piece_name, piece in pieces:
        ok, buf = cv2.imencode(".png", piece)
        if not ok:
            missing.append(f"{piece_name} (PNG encoding failed)")
            continue
        target = dest / f"{piece_name}.png"
        write_atomic(target, buf.tobytes())
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sgjnd.train.photos DEST``: collect the training photos."""
    parser = argparse.ArgumentParser(prog="python -m sgjnd.train.photos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", type=Path, help="folder to write the PNG photos into")
    parser.add_argument("--set", choices=tuple(PHOTO_SETS), default="train",
                        help="train: the training photos; heldout: the held-out evaluation photos (by source)")
    parser.add_argument("--tile", type=int, default=None, help="write TILE x TILE crops instead of whole photos")
    parser.add_argument("--tile-stride", type=int, default=None, help="step between tiles (default: TILE)")
    parser.add_argument("--max-tiles", type=int, default=6, help="most tiles per photo and scale, spread evenly")
    parser.add_argument("--scales", default="1",
                        help="comma-separated integer factors to shrink each photo by as well (e.g. 1,2,4)")
    args = parser.parse_args(argv)
    try:
        scales = tuple(int(k) for k in args.scales.split(","))
    except ValueError:
        scales = ()
    if not scales or min(scales) < 1:
        parser.error(f"--scales takes integer factors >= 1 separated by commas (e.g. 1,2,4), got {args.scales!r}")
    written, missing = collect(args.dest, PHOTO_SETS[args.set], tile=args.tile, tile_stride=args.tile_stride,
                               max_tiles=args.max_tiles, heldout=args.set == "heldout", scales=scales)
    for path in written:
        print(path)
    for item in missing:
        print(f"missing: {item}", file=sys.stderr)
    held_out = len(HELD_OUT_PHOTOS)
    print(f"{len(written)} {args.set} photo(s) in {args.dest}; {held_out} photos are held out by source "
          "(--set heldout)", file=sys.stderr)
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
