"""Real photographs for the demo and the tests, from scikit-image's installed data folder (nothing is downloaded).

scikit-image is an optional dependency (the ``samples`` extra); it is imported only inside the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sgjnd.errors import UsageError
from sgjnd.fileio import write_atomic


@dataclass(frozen=True)
class SamplePhoto:
    """One bundled photograph and where it comes from.

    Attributes:
        file: file name in scikit-image's ``data`` folder.
        licence: the terms it is distributed under.
        source: who made it, as credited by scikit-image.
    """

    file: str
    licence: str
    source: str


SAMPLE_PHOTOS: tuple[SamplePhoto, ...] = (
    SamplePhoto("astronaut.png", "public domain", "NASA (astronaut Eileen Collins), via NASA Great Images"),
    SamplePhoto("chelsea.png", "CC0", "Stefan van der Walt (Chelsea the cat)"),
    SamplePhoto("coffee.png", "CC0", "Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    SamplePhoto("rocket.jpg", "public domain", "SpaceX (DSCOVR launch on Falcon 9)"),
    SamplePhoto("hubble_deep_field.jpg", "public domain", "NASA (Hubble eXtreme Deep Field), via HubbleSite"),
)
"""The photographs :func:`sample_photos` returns, in that order, with their licences (for the README)."""


CALIBRATION_PHOTOS: tuple[str, ...] = (
    "camera.png", "brick.png", "grass.png", "gravel.png", "color.png", "page.png", "coins.png",
    "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "horse.png",
)
"""Other images in scikit-image's data folder, used as INT8 calibration data so the sample photos stay held out.
They are read from the installed package for calibration only; the repository ships none of them."""


def _skimage_data() -> Path:
    try:
        import skimage
    except ImportError as exc:
        raise UsageError(
            "the sample photographs come from scikit-image, which is not installed: pip install 'sgjnd[samples]'"
        ) from exc
    return Path(skimage.__file__).parent / "data"


def calibration_photos() -> list[Path]:
    """Paths of the :data:`CALIBRATION_PHOTOS` that the installed scikit-image ships (none of the sample photos)."""
    folder = _skimage_data()
    return [folder / name for name in CALIBRATION_PHOTOS if (folder / name).is_file()]


def sample_photos() -> list[Path]:
    """Paths of the bundled sample photographs in scikit-image's installed data folder.

    Returns:
        One path per entry of :data:`SAMPLE_PHOTOS`, in that order.

    Raises:
        UsageError: scikit-image is not installed, or its data folder lacks one of the photographs.
    """
    folder = _skimage_data()
    paths = [folder / photo.file for photo in SAMPLE_PHOTOS]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UsageError(
            f"scikit-image at {folder} lacks {', '.join(missing)}; expected "
            f"the photographs bundled in its wheel. Reinstall it: pip install --force-reinstall 'sgjnd[samples]'"
        )
    return paths


def copy_photos(paths: list[Path], dest: Path) -> list[Path]:
    """Copy ``paths`` into ``dest`` (created if needed), each atomically, and return the copies."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in paths:
        target = dest / path.name
        write_atomic(target, path.read_bytes())  # a reader never sees a half-copied photo
        copies.append(target)
    return copies


def copy_sample_photos(dest: Path) -> list[Path]:
    """Copy the sample photographs into ``dest`` (created if needed).

    Args:
        dest: the folder to copy into; existing files of the same names are replaced.

    Returns:
        The paths of the copies, in the order of :data:`SAMPLE_PHOTOS`.

    Raises:
        UsageError: the photographs are not available (see :func:`sample_photos`).
    """
    return copy_photos(sample_photos(), dest)
