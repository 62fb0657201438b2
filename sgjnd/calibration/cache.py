"""An on-disk cache of calibration results, keyed by everything that determines them.

A stale INT8 calibration cache is a classic accuracy bug (NVIDIA/TensorRT #3137: a new ONNX file, an old cache).
So an entry's key is the sha256 of a canonical JSON document of its *parts*: the graph's bytes (hash), the
preprocessing spec, the calibration data (hash of the patch bytes), the calibration settings and the versions of
the tools that computed it. Change any part and the key changes; the entry's manifest repeats the parts and the hash
of every file, and an entry whose manifest or files do not match is ignored (and replaced), never reused.

Layout: ``MODEL_DIR/.calibration-cache/<key>/manifest.json`` plus the entry's files. Entries are written into a
temporary folder and renamed into place, so a crash never leaves a half-written entry that looks valid.

The pipeline memoises whole steps with :func:`cached_step`: a step is a function that writes one file, and its key
parts name everything it reads; nothing else in the pipeline knows the cache exists.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sgjnd
from sgjnd.errors import CalibrationError
from sgjnd.fileio import sha256_bytes, sha256_file
from sgjnd.spec import ModelSpec

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".calibration-cache"
"""The cache folder inside a model directory."""

CACHE_FORMAT = 1
"""Version of the entry layout; part of every key."""

_VERSIONED = ("onnxruntime", "onnx", "numpy", "opencv-python-headless", "nvidia-modelopt")


def tool_versions() -> dict[str, str]:
    """Versions of the libraries that influence calibration results (read from metadata, nothing imported)."""
    versions = {"sgjnd": sgjnd.__version__}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def key_parts(
    *,
    kind: str,
    graph_sha256: str,
    spec: ModelSpec,
    data_sha256: str,
    settings: Mapping[str, Any],
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The parts an entry's key is made of.

    Args:
        kind: what the entry holds (``encoder-ranges``, ``features``, ``head-ranges``, ...).
        graph_sha256: sha256 of the graph bytes the result was computed on.
        spec: the model spec (preprocessing: patch size, mean, std, channel order, JPEG settings).
        data_sha256: hash of the calibration data (:meth:`CalibrationSet.sha256` or a derived hash).
        settings: every setting that changes the result (method, op types, bins, percentile, ...).
        versions: tool versions; None uses :func:`tool_versions`.
    """
    return {
        "format": CACHE_FORMAT,
        "kind": kind,
        "graph_sha256": graph_sha256,
        "spec": dataclasses.asdict(spec),
        "data_sha256": data_sha256,
        "settings": dict(settings),
        "versions": dict(versions if versions is not None else tool_versions()),
    }


def _canonical(parts: Mapping[str, Any]) -> str:
    try:
        return json.dumps(parts, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"cache key parts must be plain JSON data: {exc}") from exc


def cache_key(parts: Mapping[str, Any]) -> str:
    """The key of ``parts``: sha256 of their canonical JSON (sorted keys, no whitespace)."""
    return sha256_bytes(_canonical(parts).encode())


class CalibrationCache:
    """Calibration results on disk, one folder per key.

    Args:
        root: the cache folder (usually ``MODEL_DIR/.calibration-cache``).

    Attributes:
        hits: the entries reused through :func:`cached_step`, kind -> key.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits: dict[str, str] = {}

    @classmethod
    def for_model_dir(cls, model_dir: Path) -> CalibrationCache:
        """The cache inside ``model_dir``."""
        return cls(Path(model_dir) / CACHE_DIRNAME)

    def entry_dir(self, key: str) -> Path:
        """Where the entry of ``key`` lives."""
        return self.root / key

    def get(self, parts: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Path] | None:
        """The files of the entry for ``parts`` if it exists and is intact, else None.

        An entry is reused only if its manifest records exactly ``parts`` and every file still has its recorded
        hash; anything else is logged and treated as a miss.
        """
        key = cache_key(parts)
        folder = self.entry_dir(key)
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("calibration cache entry %s has an unreadable manifest (%s): recomputing", key[:12], exc)
            return None
        if manifest.get("parts") != json.loads(_canonical(parts)):
            log.warning("calibration cache entry %s was made from other inputs: recomputing", key[:12])
            return None
        files: dict[str, Path] = {}
        for name in names:
            path = folder / name
            recorded = manifest.get("files", {}).get(name)
            if recorded is None or not path.is_file() or sha256_file(path) != recorded:
                log.warning("calibration cache entry %s: %s is missing or changed: recomputing", key[:12], name)
                return None
            files[name] = path
        log.info("calibration cache hit: %s (%s)", key[:12], parts.get("kind"))
        return files

    def put(self, parts: Mapping[str, Any], files: Mapping[str, Path | bytes]) -> dict[str, Path]:
        """Store ``files`` (name -> path to copy, or bytes) as the entry for ``parts``; returns the stored paths."""
        key = cache_key(parts)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", suffix=".tmp", dir=self.root))
        try:
            hashes: dict[str, str] = {}
            for name, content in files.items():
                target = tmp / name
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    shutil.copyfile(content, target)
                hashes[name] = sha256_file(target)
            manifest = {"key": key, "parts": json.loads(_canonical(parts)), "files": hashes}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            final = self.entry_dir(key)
            if final.exists():
                shutil.rmtree(final)  # an invalid entry under the same key (get() already refused it)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {name: final / name for name in files}


def cached_step(
    cache: CalibrationCache | None,
    name: str,
    parts: Mapping[str, Any],
    compute: Callable[[Path], object],
    *,
    work: Path,
) -> Path:
    """The file ``name`` that one calibration step makes, memoised by the content of everything it reads.

    Args:
        cache: where results are kept; None computes every time (``use_cache`` off).
        name: the file the step makes (its name inside the cache entry).
        parts: the step's key parts (:func:`key_parts`): hashes of its inputs, its settings and the tool versions.
        compute: the step; writes its result to the path it is given.
        work: a scratch folder for a freshly computed result.

    Returns:
        The result: the cache entry's file on a hit, else the computed file (stored in the cache first when there is
        one). A hit is recorded in :attr:`CalibrationCache.hits`.
    """
    if cache is not None:
        hit = cache.get(parts, (name,))
        if hit is not None:
            cache.hits[str(parts["kind"])] = cache_key(parts)
            return hit[name]
    out = Path(work) / f"{parts['kind']}.{name}"
    compute(out)
    if not out.is_file():
        raise CalibrationError(f"calibration step {parts['kind']!r} wrote no {out.name}")
    return out if cache is None else cache.put(parts, {name: out})[name]
