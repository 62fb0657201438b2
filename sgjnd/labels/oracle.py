"""Full-reference perceptual metrics used as JND oracles: Butteraugli (3-norm) and SSIMULACRA2.

An oracle scores a (reference, distorted) pair and says whether the difference is *visible* at a threshold.
Neither is a human: labels made with them are proxy labels (see :mod:`sgjnd.labels.proxy`).

Default thresholds, calibrated so that the proxy JNDs of real photos fall where human first-JNDs fall on MCL-JCI
(QF ≈ 20-40, median ≈ 30; method notes §4.1). Calibration: ``sgjnd label PHOTOS --oracle X --calibrate-to 30``
on 21 photographs (the 16 training photos of :mod:`sgjnd.train.photos` and the 5 demo photos; 4:2:0 OpenCV JPEG):
each photo's threshold is the midpoint of its scores at QF 30 and 31, and the default is their median, rounded
(Butteraugli 2.02 -> 2.0, per-photo 1.69..2.60; SSIMULACRA2 51.36 -> 51, per-photo 31..74).

- Butteraugli 3-norm (``butteraugli_main --pnorm 3`` of libjxl 0.7, 80 nits): visible above
  :data:`BUTTERAUGLI_THRESHOLD`. The max-norm is not used: with 4:2:0 chroma it stays above 1 even at QF 100.
  Published guidance (below ~1 invisible, above ~2 clearly visible) is for the max-norm at normal viewing; our
  threshold is set by the MCL-JCI QF range, not by that guidance.
- SSIMULACRA2 (the ``ssimulacra2`` Python port, not checked against libjxl's C++): visible below
  :data:`SSIMULACRA2_THRESHOLD` (its README: 90 very high, 70 high, 50 medium quality).
"""

from __future__ import annotations

import abc
import functools
import importlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from sgjnd.errors import UsageError
from sgjnd.fileio import sha256_file

BUTTERAUGLI_THRESHOLD = 2.0
"""Default Butteraugli 3-norm above which a difference counts as visible (calibrated, module docstring)."""
SSIMULACRA2_THRESHOLD = 51.0
"""Default SSIMULACRA2 score below which a difference counts as visible (calibrated, module docstring)."""

BUTTERAUGLI_APT = "apt-get install -y libjxl-devtools"
SSIMULACRA2_PIP = "pip install ssimulacra2==0.3.0  (or: pip install 'sgjnd[train]')"


class OracleUnavailable(UsageError):
    """The oracle's program or package is not installed."""


class OracleError(UsageError):
    """The oracle ran but failed or printed something unexpected."""


@dataclass(frozen=True)
class Oracle(abc.ABC):
    """A full-reference metric with a visibility rule.

    Attributes:
        name: registry name (``butteraugli``, ``ssimulacra2``).
        higher_is_worse: True for a distance (visible above the threshold), False for a quality score (visible
            below it).
        default_threshold: the calibrated threshold.
        unit: what the score is, in words.
    """

    name: ClassVar[str]
    higher_is_worse: ClassVar[bool]
    default_threshold: ClassVar[float]
    unit: ClassVar[str]

    @abc.abstractmethod
    def score(self, ref_bgr: np.ndarray, dis_bgr: np.ndarray) -> float:
        """The metric of a pair of (H, W, 3) uint8 BGR images of equal shape."""

    @abc.abstractmethod
    def version(self) -> str:
        """What identifies this oracle's results (program hash, package version, settings), for caches."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`OracleUnavailable` when the oracle cannot run here."""

    def visible(self, score: float, threshold: float) -> bool:
        """Whether ``score`` means a visible difference at ``threshold``."""
        return score > threshold if self.higher_is_worse else score < threshold

    def rule(self, threshold: float) -> str:
        """The visibility rule in words, e.g. ``visible when 3-norm > 2.0``."""
        return f"visible when {self.unit} {'>' if self.higher_is_worse else '<'} {threshold:g}"


def _check_pair(ref: np.ndarray, dis: np.ndarray) -> None:
    for what, a in (("reference", ref), ("distorted", dis)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            got = f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
            raise UsageError(f"the {what} image must be an (H, W, 3) uint8 BGR array, got {got}")
    if ref.shape != dis.shape:
        raise UsageError(f"reference and distorted images differ in shape: {ref.shape} vs {dis.shape}")


@dataclass(frozen=True)
class Butteraugli(Oracle):
    """Butteraugli p-norm from libjxl's ``butteraugli_main`` (Debian: ``apt-get install libjxl-devtools``).

    Attributes:
        binary: the program, a name on PATH or a path.
        pnorm: the p of the norm it prints (3: libjxl's mean of the 3-, 6- and 12-norms of the distance map).
        intensity_target: display luminance in nits (80 is libjxl's SDR default).
    """

    binary: str = "butteraugli_main"
    pnorm: float = 3.0
    intensity_target: float = 80.0

    name: ClassVar[str] = "butteraugli"
    higher_is_worse: ClassVar[bool] = True
    default_threshold: ClassVar[float] = BUTTERAUGLI_THRESHOLD
    unit: ClassVar[str] = "Butteraugli 3-norm"

    def path(self) -> str:
        """The program's absolute path.

        Raises:
            OracleUnavailable: it is not installed.
        """
        found = shutil.which(self.binary)
        if found is None:
            raise OracleUnavailable(
                f"the butteraugli oracle needs {self.binary!r}, which is not on PATH: install it with "
                f"`{BUTTERAUGLI_APT}` (Debian/Ubuntu), or choose --oracle ssimulacra2"
            )
        return found

    def check(self) -> None:
        self.path()

    def version(self) -> str:
        return f"butteraugli_main sha256:{_program_hash(self.path())[:16]} pnorm={self.pnorm:g} " \
               f"nits={self.intensity_target:g}"

    def score(self, ref_bgr: np.ndarray, dis_bgr: np.ndarray) -> float:
        _check_pair(ref_bgr, dis_bgr)
        program = self.path()
        with tempfile.TemporaryDirectory(prefix="sgjnd-ba-") as tmp:
            ref_path, dis_path = os.path.join(tmp, "ref.ppm"), os.path.join(tmp, "dis.ppm")
            # PPM: no compression cost, and libjxl reads it as sRGB without a profile, like the runtime's pixels.
            if not (cv2.imwrite(ref_path, ref_bgr) and cv2.imwrite(dis_path, dis_bgr)):
                raise OracleError(f"could not write temporary PPM files in {tmp}")
            cmd = [program, ref_path, dis_path, "--pnorm", f"{self.pnorm:g}",
                   "--intensity_target", f"{self.intensity_target:g}"]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OracleError(f"{program} failed to run: {exc}") from exc
        if done.returncode != 0:
            raise OracleError(f"{program} exited with {done.returncode}: {done.stderr.strip()[-300:]}")
        m = re.search(r"(\d+)-norm:\s*([0-9.eE+-]+)", done.stdout)
        if m is None:
            raise OracleError(f"{program} printed no '<p>-norm: value' line; got {done.stdout.strip()[:200]!r}")
        return float(m.group(2))


@functools.cache
def _program_hash(path: str) -> str:
    return sha256_file(Path(path))


@dataclass(frozen=True)
class Ssimulacra2(Oracle):
    """SSIMULACRA2 from the pure-Python ``ssimulacra2`` package (version 0.3.0), computed on arrays.

    ``compute_ssimulacra2`` of the package reads files; :meth:`score` runs the same steps on arrays (a test checks
    that both agree), so no temporary files are written.
    """

    name: ClassVar[str] = "ssimulacra2"
    higher_is_worse: ClassVar[bool] = False
    default_threshold: ClassVar[float] = SSIMULACRA2_THRESHOLD
    unit: ClassVar[str] = "SSIMULACRA2"

    def _module(self) -> Any:
        try:
            return importlib.import_module("ssimulacra2.ssimulacra2")
        except ImportError as exc:
            raise OracleUnavailable(f"the ssimulacra2 oracle needs the ssimulacra2 package: {SSIMULACRA2_PIP}") from exc

    def check(self) -> None:
        self._module()

    def version(self) -> str:
        return f"ssimulacra2 {importlib.import_module('ssimulacra2').__version__}"

    def score(self, ref_bgr: np.ndarray, dis_bgr: np.ndarray) -> float:
        _check_pair(ref_bgr, dis_bgr)
        s2 = self._module()
        orig_linear = s2.srgb_to_linear(ref_bgr[..., ::-1].astype(np.float64))
        dist_linear = s2.srgb_to_linear(dis_bgr[..., ::-1].astype(np.float64))
        img1 = s2.make_positive_xyb(s2.linear_rgb_to_xyb(orig_linear))
        img2 = s2.make_positive_xyb(s2.linear_rgb_to_xyb(dist_linear))
        msssim = s2.Msssim()
        for scale in range(s2.kNumScales):
            if img1.shape[0] < 8 or img1.shape[1] < 8:
                break
            mu1, mu2 = s2.blur_image(img1), s2.blur_image(img2)
            data = s2.MsssimScale()
            data.avg_ssim = s2.ssim_map(mu1, mu2, s2.blur_image(img1 * img1), s2.blur_image(img2 * img2),
                                        s2.blur_image(img1 * img2))
            data.avg_edgediff = s2.edge_diff_map(img1, mu1, img2, mu2)
            msssim.scales.append(data)
            if scale < s2.kNumScales - 1:
                orig_linear = s2.downsample(orig_linear, 2, 2)
                dist_linear = s2.downsample(dist_linear, 2, 2)
                img1 = s2.make_positive_xyb(s2.linear_rgb_to_xyb(orig_linear))
                img2 = s2.make_positive_xyb(s2.linear_rgb_to_xyb(dist_linear))
        return float(msssim.score())


ORACLES: dict[str, type[Oracle]] = {"butteraugli": Butteraugli, "ssimulacra2": Ssimulacra2}
"""Oracle name -> class."""


def get_oracle(name: str, **options: Any) -> Oracle:
    """The oracle ``name`` with ``options``, checked to be runnable.

    Raises:
        UsageError: unknown name or option; OracleUnavailable: not installed.
    """
    cls = ORACLES.get(name)
    if cls is None:
        raise UsageError(f"unknown oracle {name!r}: expected one of {', '.join(ORACLES)}")
    try:
        oracle = cls(**options)
    except TypeError as exc:
        raise UsageError(f"bad options {sorted(options)} for the {name} oracle: {exc}") from exc
    oracle.check()
    return oracle
