"""ONNX export: graphs and sidecars, a clean opset-17 graph, ONNX Runtime parity with PyTorch, byte-identical
re-export, nothing written on failure, the simplifier guard, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import torch  # noqa: E402

from sgjnd.errors import ExportError, SpecError, UsageError  # noqa: E402
from sgjnd.export import onnx as onnx_export  # noqa: E402
from sgjnd.export.onnx import ExportReport, onnx_from_checkpoint  # noqa: E402
from sgjnd.model import create_model, load_checkpoint, save_checkpoint  # noqa: E402
from sgjnd.runtime.backends.registry import open_model  # noqa: E402
from sgjnd.spec import read_sidecar  # noqa: E402

FILES = ("encoder.onnx", "encoder.onnx.json", "head.onnx", "head.onnx.json")


def _checkpoint(folder: Path, name: str, seed: int = 0) -> Path:
    path = folder / f"{name}_seed{seed}.pt"
    save_checkpoint(create_model(name, seed=seed), path, weights=f"UNTRAINED: {name} seed {seed}")
    return path


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def exported(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    return onnx_from_checkpoint(ckpt, tmp_path_factory.mktemp("onnx") / "model")


def _bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def test_writes_both_graphs_with_sidecars(exported: ExportReport, ckpt: Path) -> None:
    source = read_sidecar(ckpt)
    assert sorted(p.name for p in exported.out_dir.iterdir()) == sorted(FILES)  # no temporary files left
    for graph in ("encoder", "head"):
        path = exported.out_dir / f"{graph}.onnx"
        sidecar = read_sidecar(path)  # checks the sha256 too
        info = sidecar.artifact
        assert (info.kind, info.graph, info.precision, info.file) == ("onnx", graph, "fp32", path.name)
        assert info.checkpoint_sha256 == source.artifact.sha256
        assert info.weights == source.artifact.weights
        assert sidecar.model == source.model.with_encoder_input("uint8")  # the default for new exports
        assert set(info.producer) == {"torch", "onnx", "onnxruntime", "sgjnd"}
        assert info.details["opset"] == 17 and info.details["max_batch"] == 64
        assert info.details["exporter"] == "torchscript"
        assert graph in info.details["parity"] and "bundled photos" in info.details["parity_source"]
    assert exported.parity_source.endswith("of the bundled photos")
    assert set(exported.parity) == {"encoder", "encoder[batch=1]", "head"}
    assert all(c.passed for cs in exported.parity.values() for c in cs)
    assert "encoder.onnx" in exported.summary()


def test_graphs_are_clean_opset_17_with_dynamic_batch(exported: ExportReport) -> None:
    spec = read_sidecar(exported.files["encoder"]).model
    for graph_name, path in exported.files.items():
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [("", 17)]
        graph = spec.graph(graph_name)  # type: ignore[arg-type]
        for values, specs in ((proto.graph.input, graph.inputs), (proto.graph.output, graph.outputs)):
            assert [v.name for v in values] == [t.name for t in specs]
            for value, tensor in zip(values, specs, strict=True):
                dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
                assert dims == list(tensor.shape)  # "batch" first, fixed sizes after
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["sgjnd.graph"] == graph_name and meta["sgjnd.model"] == "sgjnd_tiny"
    encoder = onnx.load(str(exported.files["encoder"]))
    ops = [n.op_type for n in encoder.graph.node]
    assert ops.count("LayerNormalization") == 6  # two per cross-scale attention layer, each one op
    assert "Pow" not in ops  # no decomposed LayerNorm


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_onnxruntime_matches_pytorch_elementwise(
    exported: ExportReport, ckpt: Path, photos: list[Path], batch: int
) -> None:
    from sgjnd.runtime.decode import decode_image
    from sgjnd.runtime.patches import extract_patches, normalize_patches, patch_grid

    network = load_checkpoint(ckpt)
    spec = network.spec
    bgr = decode_image(photos[2]).bgr
    grid = patch_grid(bgr.shape[0], bgr.shape[1], spec.patch_size, max_patches=batch)
    pixels = extract_patches(bgr, grid)
    patches = normalize_patches(pixels, spec)
    assert len(patches) == batch
    with torch.no_grad():
        want_f = network.encoder(torch.from_numpy(patches)).numpy()
        f_dis = want_f[::-1].copy()
        want_q, want_w = (t.numpy() for t in network.head(torch.from_numpy(want_f), torch.from_numpy(f_dis)))
    with open_model("onnxruntime", exported.out_dir) as models:
        got_f = models.encoder.infer({"patches": pixels})["features"]  # the uint8 graph normalises inside
        got = models.head.infer({"f_ref": want_f, "f_dis": f_dis})
    np.testing.assert_allclose(got_f, want_f, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got["q"], want_q, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["w"], want_w, rtol=1e-4, atol=1e-6)


def test_reexport_is_byte_identical(exported: ExportReport, ckpt: Path, tmp_path: Path) -> None:
    again = onnx_from_checkpoint(ckpt, tmp_path / "again")
    assert _bytes(again.out_dir) == _bytes(exported.out_dir)
    # Into the same folder, over the previous files: the same bytes again.
    onnx_from_checkpoint(ckpt, again.out_dir)
    assert _bytes(again.out_dir) == _bytes(exported.out_dir)


def test_parity_failure_writes_nothing(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("earlier content")
    impossible = {"": onnx_export.Tolerance(atol=0.0, rtol=0.0, min_cosine=1.0)}
    monkeypatch.setattr(onnx_export, "tolerances_for", lambda precision: impossible)
    with pytest.raises(ExportError) as info:
        onnx_from_checkpoint(ckpt, out)
    message = str(info.value)
    assert "differs from PyTorch" in message and "FAIL features" in message and "nothing was written" in message
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_write_failure_leaves_no_partial_files(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "model"
    calls = {"n": 0}
    real_replace = onnx_export.os.replace

    def flaky_replace(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(onnx_export.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        onnx_from_checkpoint(ckpt, out)
    assert list(out.iterdir()) == []  # every staged temporary file was removed


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"opset": 16}, "opset must be an integer >= 17"),
        ({"max_batch": 0}, "max_batch must be a positive integer"),
        ({"exporter": "dynamo", "opset": 17}, "dynamo exporter writes opset 18"),
        ({"exporter": "tflite"}, "exporter must be"),
        ({"parity_patches": np.zeros((1, 3, 64, 64), np.float32)}, "parity_patches must be uint8"),
        ({"parity_patches": np.zeros((2, 3, 64, 64), np.float32)}, "for a uint8-input encoder must be"),
        ({"encoder_input": "float16"}, "encoder_input must be 'uint8' or 'float32'"),
    ],
)
def test_bad_arguments_are_refused(ckpt: Path, tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        onnx_from_checkpoint(ckpt, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_refused(ckpt: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        onnx_from_checkpoint(ckpt, target)


def test_checkpoint_without_sidecar_is_refused(ckpt: Path, tmp_path: Path) -> None:
    lone = tmp_path / "lone.pt"
    lone.write_bytes(ckpt.read_bytes())
    with pytest.raises(SpecError, match="no spec sidecar"):
        onnx_from_checkpoint(lone, tmp_path / "out")


def test_given_parity_patches_are_used(ckpt: Path, tmp_path: Path) -> None:
    patches = np.random.default_rng(0).normal(size=(3, 3, 64, 64)).astype(np.float32)
    report = onnx_from_checkpoint(ckpt, tmp_path / "out", parity_patches=patches, encoder_input="float32")
    assert report.parity_source == "3 given patches"
    assert report.parity["encoder"][0].shape == (3, 128)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    for kind in ("uint8", "float32"):  # pixels serve either graph
        report = onnx_from_checkpoint(ckpt, tmp_path / kind, parity_patches=pixels, encoder_input=kind)
        assert report.parity_source == "3 given patches" and report.parity["encoder"][0].shape == (3, 128)


# -- uint8 and float32 encoder inputs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def float_export(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportReport:
    return onnx_from_checkpoint(ckpt, tmp_path_factory.mktemp("onnx_float") / "model", encoder_input="float32")


def test_uint8_graph_casts_its_input_first_and_matches_the_float_graph(
    exported: ExportReport, float_export: ExportReport, photos: list[Path]
) -> None:
    """The uint8 graph's features equal the float graph's on the runtime's own float preprocessing (float32
    rounding apart), and its input is cast before any other op uses it (TensorRT's rule for uint8 inputs)."""
    from sgjnd.runtime.decode import decode_image
    from sgjnd.runtime.patches import extract_patches, normalize_patches, patch_grid

    proto = onnx.load(str(exported.files["encoder"]))
    (graph_input,) = proto.graph.input
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    users = [n for n in proto.graph.node if graph_input.name in n.input]
    assert [n.op_type for n in users] == ["Cast"]
    spec = read_sidecar(exported.files["encoder"]).model
    assert spec.encoder_input == "uint8" and spec.encoder_graph().inputs[0].shape == ("batch", 64, 64, 3)
    assert read_sidecar(float_export.files["encoder"]).model.encoder_input == "float32"

    bgr = decode_image(photos[0]).bgr
    pixels = extract_patches(bgr, patch_grid(bgr.shape[0], bgr.shape[1], spec.patch_size, max_patches=12))
    with open_model("onnxruntime", exported.out_dir) as u8, open_model("onnxruntime", float_export.out_dir) as f32:
        got = u8.encoder.infer({"patches": pixels})["features"]
        want = f32.encoder.infer({"patches": normalize_patches(pixels, spec)})["features"]
        head_u8 = u8.head.infer({"f_ref": got, "f_dis": got[::-1].copy()})
        head_f32 = f32.head.infer({"f_ref": want, "f_dis": want[::-1].copy()})
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(head_u8["q"], head_f32["q"], atol=1e-5)
    # The heads are the same graph; only the encoder's input differs.
    assert (float_export.out_dir / "head.onnx").read_bytes() == (exported.out_dir / "head.onnx").read_bytes()


def test_sidecar_format_follows_the_encoder_input(exported: ExportReport, float_export: ExportReport) -> None:
    """A float-input sidecar stays format 1 (older runtimes read it); a uint8 one is format 2 (they refuse it)."""
    u8 = json.loads((exported.out_dir / "encoder.onnx.json").read_text())
    f32 = json.loads((float_export.out_dir / "encoder.onnx.json").read_text())
    assert (u8["format"], u8["model"]["encoder_input"]) == (2, "uint8")
    assert f32["format"] == 1 and "encoder_input" not in f32["model"]


def test_a_format_1_sidecar_may_not_claim_uint8(float_export: ExportReport, tmp_path: Path) -> None:
    from sgjnd.spec import Sidecar

    data = json.loads((float_export.out_dir / "encoder.onnx.json").read_text())
    data["model"]["encoder_input"] = "uint8"
    with pytest.raises(SpecError, match="from sidecar format 2 on"):
        Sidecar.from_dict(data)
    data["format"] = 3
    with pytest.raises(SpecError, match="reads formats 1, 2"):
        Sidecar.from_dict(data)


def _scale_weights(proto: Any) -> Any:
    """A "simplifier" that changes results: every float weight times 1.01."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array * np.float32(1.01), init.name))
    return proto


def test_simplifier_result_is_kept_only_when_outputs_are_unchanged(
    ckpt: Path, exported: ExportReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "find_simplifier", lambda: ("breaker 1.0", _scale_weights))
    broken = onnx_from_checkpoint(ckpt, tmp_path / "broken")
    assert broken.simplified == {"encoder": None, "head": None}
    plain = onnx_from_checkpoint(ckpt, tmp_path / "plain", simplify=False)
    assert _bytes(broken.out_dir) == _bytes(plain.out_dir)  # the graphs as exported were kept

    monkeypatch.setattr(onnx_export, "find_simplifier", lambda: ("identity 1.0", lambda proto: proto))
    kept = onnx_from_checkpoint(ckpt, tmp_path / "kept")
    assert kept.simplified == {"encoder": "identity 1.0", "head": "identity 1.0"}
    assert read_sidecar(kept.files["head"]).artifact.details["simplifier"] == "identity 1.0"


def test_cli_export(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sgjnd.cli import main

    assert main(["export", str(ckpt), "-o", str(tmp_path / "cli"), "--max-batch", "8", "--no-simplify"]) == 0
    out = capsys.readouterr().out
    assert "encoder.onnx" in out and "PASS features" in out and "weights: UNTRAINED" in out
    assert json.loads((tmp_path / "cli" / "encoder.onnx.json").read_text())["artifact"]["details"]["max_batch"] == 8
    assert main(["export", str(ckpt), "-o", str(tmp_path / "bad"), "--opset", "13"]) == 2


@pytest.mark.slow
def test_dynamo_exporter_at_opset_18(ckpt: Path, tmp_path: Path) -> None:
    report = onnx_from_checkpoint(ckpt, tmp_path / "dynamo", opset=18, exporter="dynamo")
    proto = onnx.load(str(report.files["encoder"]))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [18]
    assert [n.op_type for n in proto.graph.node].count("LayerNormalization") == 6
    with open_model("onnxruntime", report.out_dir) as models:
        assert models.encoder.infer({"patches": np.zeros((5, 64, 64, 3), np.uint8)})["features"].shape == (5, 128)


@pytest.mark.slow
def test_sgjnd_r50_exports_with_parity(r50_export: ExportReport) -> None:
    report = r50_export
    assert all(c.passed for cs in report.parity.values() for c in cs), report.summary()
    assert report.parity["encoder"][0].shape == (6, 1024)
    proto = onnx.load(str(report.files["encoder"]), load_external_data=False)
    assert [n.op_type for n in proto.graph.node].count("LayerNormalization") == 6
