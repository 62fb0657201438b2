"""The ``torch`` backend: the reference model, eager PyTorch, on a checkpoint written by ``save_checkpoint``.

Both graphs of a model (``encoder`` and ``head``) run on the same loaded network: the first backend to enter loads
the checkpoint, the others share it, and the last to exit releases it. This module imports torch; the backend
registry imports it only when the ``torch`` backend is chosen.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from sgjnd.errors import BackendError, BackendUnavailable, SpecError, UsageError
from sgjnd.runtime.backends.base import Backend, ModelBackends
from sgjnd.spec import GraphSpec, ModelSpec, read_sidecar

if TYPE_CHECKING:
    from sgjnd.model.sgjnd_net import SGJND

_OPTIONS = ("device", "threads", "encoder_input")

_CacheKey = tuple[str, str, str]  # (resolved checkpoint path, sha256 from its sidecar, device)
_cache: dict[_CacheKey, tuple[SGJND, int]] = {}  # key -> (network, number of backends holding it)
_cache_lock = threading.Lock()


def _acquire(path: Path, device: torch.device) -> tuple[_CacheKey, SGJND]:
    """The network of the checkpoint at ``path`` on ``device``, loaded once and shared while anyone holds it."""
    from sgjnd.model.checkpoint import REBUILD_HINT, load_checkpoint

    recorded = read_sidecar(path, rebuild_hint=REBUILD_HINT, verify_hash=False).artifact.sha256
    key = (str(path.resolve()), recorded, str(device))
    with _cache_lock:
        if key in _cache:
            model, holders = _cache[key]
            _cache[key] = (model, holders + 1)
            return key, model
        model = load_checkpoint(path, verify_hash=True).to(device).eval()
        _cache[key] = (model, 1)
        return key, model


def _release(key: _CacheKey) -> None:
    with _cache_lock:
        if key not in _cache:
            return
        model, holders = _cache[key]
        if holders <= 1:
            del _cache[key]
        else:
            _cache[key] = (model, holders - 1)


class TorchBackend(Backend):
    """One graph of an SGJND checkpoint, run eagerly in PyTorch (the reference backend).

    Args:
        artifact: the checkpoint file (its sidecar ``artifact.json`` beside it).
        model: the model spec from the sidecar.
        graph: the graph to run: ``encoder`` (patches -> features) or ``head`` (f_ref, f_dis -> q, w).
        options: ``device`` (a torch device string, default ``"cpu"``), ``threads`` (intra-op CPU threads for
            the whole process, set when loading; None leaves torch's setting alone) and ``encoder_input``
            (through :meth:`open_model`; ``model.encoder_input`` says what the encoder takes).

    Raises:
        UsageError: an unknown option, an invalid device string or thread count, or an unknown graph.
    """

    name: ClassVar[str] = "torch"

    def __init__(self, artifact: Path, model: ModelSpec, graph: GraphSpec, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise UsageError(f"unknown option(s) {unknown} for the torch backend: expected some of {list(_OPTIONS)}")
        if graph.name not in ("encoder", "head"):
            raise UsageError(f"the torch backend runs graph 'encoder' or 'head', got {graph.name!r}")
        device = options.get("device", "cpu")
        threads = options.get("threads")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise UsageError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from exc
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UsageError(f"threads must be a positive integer or None, got {threads!r}")
        self.threads: int | None = threads
        super().__init__(artifact, model, graph, **options)
        self._key: _CacheKey | None = None
        self._net: SGJND | None = None
        self._encoder: torch.nn.Module | None = None

    @classmethod
    def open_model(cls, location: Path, *, precision: str = "fp32", **options: Any) -> ModelBackends:
        """Both graphs of the checkpoint at ``location`` (not loaded yet: use the result in a ``with`` block).

        Args:
            location: a checkpoint file written by ``sgjnd.model.save_checkpoint``.
            precision: only ``fp32`` (the reference).
            options: backend options (``device``, ``threads``, ``encoder_input``). ``encoder_input="uint8"`` takes
                (N, s, s, 3) BGR pixels and normalises on the device (:class:`~sgjnd.model.pixels.PixelEncoder`),
                like an exported uint8 graph; the default is ``uint8`` on a CUDA device (a quarter of the bytes to
                copy) and the checkpoint's own ``float32`` elsewhere.

        Raises:
            UsageError: another precision was asked for, or ``location`` is a directory.
            SpecError: the checkpoint or its sidecar is missing or unreadable.
        """
        if precision != "fp32":
            raise UsageError(
                f"the torch backend runs the reference model in fp32 only, got precision {precision!r}; "
                "use the onnxruntime or tensorrt backend for fp16/int8"
            )
        location = Path(location)
        if location.is_dir():
            found = sorted(p.name for p in location.glob("*.pt"))
            raise UsageError(
                f"the torch backend opens a checkpoint file, got the directory {location}"
                + (f" (it holds {', '.join(found)}: pass one of them)" if found else "")
            )
        from sgjnd.model.checkpoint import REBUILD_HINT

        sidecar = read_sidecar(location, rebuild_hint=REBUILD_HINT, verify_hash=False)  # hashed once, when loading
        encoder_input = options.pop("encoder_input", None)
        if encoder_input is None:
            on_cuda = str(options.get("device", "cpu")).startswith("cuda")
            encoder_input = "uint8" if on_cuda else sidecar.model.encoder_input
        spec = sidecar.model.with_encoder_input(encoder_input)
        return ModelBackends(
            model=spec,
            encoder=cls(location, spec, spec.encoder_graph(), **options),
            head=cls(location, spec, spec.head_graph(), **options),
            weights=sidecar.artifact.weights,
        )

    @property
    def description(self) -> str:
        """``torch <version> <graph> on <device>, <n> thread(s), fp32`` (and ``, uint8 input`` for such an encoder)."""
        threads = self.threads if self.threads is not None else torch.get_num_threads()
        pixels = ", uint8 input" if self.graph.name == "encoder" and self.model.encoder_input == "uint8" else ""
        return f"torch {torch.__version__} {self.graph.name} on {self.device}, {threads} thread(s), fp32{pixels}"

    def _load(self) -> None:
        if self._net is not None:
            return
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(
                f"device {self.device} was asked for but this torch ({torch.__version__}) sees no CUDA device; "
                "use device='cpu'"
            )
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # process-wide: torch has no per-module thread pool
        key, net = _acquire(self.artifact, self.device)
        if not net.spec.same_network(self.model):
            _release(key)
            raise SpecError(
                f"{self.artifact} changed since it was opened: its spec no longer matches the one the backend was "
                "built with; open the model again"
            )
        self._key, self._net = key, net
        self._encoder = net.encoder
        if self.model.encoder_input == "uint8":
            from sgjnd.model.pixels import PixelEncoder

            self._encoder = PixelEncoder(net.encoder, net.spec).to(self.device).eval()

    def _unload(self) -> None:
        if self._key is not None:
            _release(self._key)
        self._key, self._net, self._encoder = None, None, None

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        net, encoder = self._net, self._encoder
        if net is None or encoder is None:
            raise BackendError(f"torch backend for {self.graph.name} is not loaded: use it in a `with` block")
        inputs = {name: self._tensor(array) for name, array in feeds.items()}
        with torch.inference_mode(), _strict_fp32(self.device):
            if self.graph.name == "encoder":
                return {"features": _numpy(encoder(inputs["patches"]))}
            q, w = net.head(inputs["f_ref"], inputs["f_dis"])
            return {"q": _numpy(q), "w": _numpy(w)}

    @property
    def tensor_device(self) -> str | None:
        """The backend's torch device (CPU included): it runs on tensors there as they come."""
        return str(self.device)

    def _infer_device(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """On torch tensors on the device, on the caller's current stream: nothing synchronises."""
        net, encoder = self._net, self._encoder
        if net is None or encoder is None:
            raise BackendError(f"torch backend for {self.graph.name} is not loaded: use it in a `with` block")
        with torch.inference_mode(), _strict_fp32(self.device):
            if self.graph.name == "encoder":
                return {"features": encoder(feeds["patches"]).float()}
            q, w = net.head(feeds["f_ref"], feeds["f_dis"])
            return {"q": q.float(), "w": w.float()}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        if not array.flags.writeable:  # from_numpy warns on read-only arrays; copy only then
            array = array.copy()
        return torch.from_numpy(array).to(self.device)


@contextlib.contextmanager
def _strict_fp32(device: torch.device) -> Iterator[None]:
    """TF32 off for the call on CUDA: the reference computes in IEEE FP32. cuDNN convolutions default to TF32 on
    Ampere and newer GPUs; on an H200 that moved the demo model's features by 1e-2 (cosine 0.9999957), outside the
    FP32 tolerance, while strict FP32 matched the CPU to 7e-6. The flags are process-wide, so they are restored."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().to("cpu", torch.float32).numpy())
