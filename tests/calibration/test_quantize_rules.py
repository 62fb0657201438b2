"""Which nodes an INT8 graph keeps in float: name patterns, the attention's activation × activation MatMuls, and the
7-bit weight rule of the ONNX Runtime CPU flavour."""

from __future__ import annotations

import pytest
from conftest import fake_cpu

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from sgjnd.calibration.fp16 import attention_matmuls  # noqa: E402
from sgjnd.calibration.quantize import QuantizeConfig, flavour_options, match_node_names  # noqa: E402
from sgjnd.errors import UsageError  # noqa: E402

NAMES = ["/backbone/_conv_stem/Conv", "/backbone/Clip", "/backbone/_blocks.1/_expand_conv/Conv",
         "/backbone/_blocks.10/_expand_conv/Conv", "/csa.0/mha/MatMul_2"]


def test_patterns_and_exact_names_expand_in_graph_order() -> None:
    matched, unknown = match_node_names(NAMES, ["/backbone/_blocks.[0-5]/*", "/backbone/Clip", "/nope/*", "/gone"])
    # [0-5] is one character: block 10 is not matched by it.
    assert matched == ("/backbone/Clip", "/backbone/_blocks.1/_expand_conv/Conv")
    assert unknown == ["/nope/*", "/gone"]


def test_no_entries_match_nothing() -> None:
    assert match_node_names(NAMES, []) == ((), [])


def _attention_graph() -> onnx.GraphProto:
    """x -> MatMul(x, W) (a weight) -> q; MatMul(q, k) with k computed -> logits; a Constant-weight MatMul."""
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 4], [0.1] * 16)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["q"], name="proj"),
        helper.make_node("Transpose", ["q"], ["k"], name="t", perm=[1, 0]),
        helper.make_node("MatMul", ["q", "k"], ["logits"], name="qk"),
        helper.make_node("Constant", [], ["c"], name="const", value=w),
        helper.make_node("MatMul", ["logits", "c"], ["y"], name="by_constant"),
    ]
    return helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], [w])


def test_only_activation_by_activation_matmuls_are_attention() -> None:
    """The rule that keeps the attention in float, for INT8 as for FP16: a Constant or initializer weight is not."""
    assert attention_matmuls(helper.make_model(_attention_graph())) == ["qk"]


@pytest.mark.parametrize(("setting", "vnni", "expected"), [
    ("on", True, True), ("off", False, False), ("auto", False, True), ("auto", True, False),
])
def test_reduce_range_only_for_the_ort_flavour(setting: str, vnni: bool, expected: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:

    fake_cpu(monkeypatch, {"vnni": vnni})
    config = QuantizeConfig(reduce_range=setting)  # type: ignore[arg-type]
    assert config.reduce_range_for("ort-cpu") is expected
    assert config.reduce_range_for("tensorrt") is False
    assert flavour_options("ort-cpu", reduce_range=expected)["reduce_range"] is expected
    assert "reduce_range" not in flavour_options("tensorrt")


def test_unknown_reduce_range_is_refused() -> None:
    with pytest.raises(UsageError, match="reduce_range must be auto, on or off"):
        QuantizeConfig(reduce_range="maybe")  # type: ignore[arg-type]
