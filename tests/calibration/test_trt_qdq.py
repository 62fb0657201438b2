"""TensorRT's QDQ rules, checked on small hand-made graphs: each rule catches its violation, a clean graph passes,
and the TensorRT flavour of a real quantised encoder keeps every rule (sgjnd.calibration.trt_qdq)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sgjnd.calibration.trt_qdq import (  # noqa: E402
    constant_operand_nodes,
    constant_tensors,
    drop_input_qdq,
    fusible_add_inputs,
    tensorrt_qdq_problems,
)


def init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def graph_model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def clean_conv(**changes: object) -> onnx.ModelProto:
    """x -Q/DQ(per tensor)-> Conv(weight: int8 per channel on axis 0 -> DQ) -> + bias (float) -> y."""
    weight = np.arange(-8 * 4 * 9 // 2, 8 * 4 * 9 // 2).reshape(8, 4, 3, 3).clip(-127, 127).astype(np.int8)
    parts = {
        "x_scale": np.float32(0.1), "x_zp": np.int8(0),
        "w": weight, "w_scale": np.full(8, 0.01, np.float32), "w_zp": np.zeros(8, np.int8), "w_axis": 0,
        "bias": np.ones((1, 8, 1, 1), np.float32),
    }
    parts.update(changes)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_x"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zp"], ["wd"], name="dq_w",
                         **({"axis": parts["w_axis"]} if parts["w_axis"] is not None else {})),
        helper.make_node("Conv", ["xd", "wd"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "bias"], ["y"], name="bias_add"),
    ]
    inits = [init(k, v) for k, v in parts.items() if k != "w_axis"]  # type: ignore[arg-type]
    return graph_model(nodes, inits)


def test_a_clean_symmetric_graph_keeps_every_rule() -> None:
    model = clean_conv()
    onnx.checker.check_model(model, full_check=True)
    assert tensorrt_qdq_problems(model) == []


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"x_zp": np.int8(3)}, "zero point is not 0"),
        ({"x_zp": np.uint8(0)}, "zero point is uint8"),
        ({"x_scale": np.float32(0.0)}, "finite and > 0"),
        ({"x_scale": np.float32(np.nan)}, "finite and > 0"),
        ({"w_axis": 1, "w_scale": np.full(4, 0.01, np.float32), "w_zp": np.zeros(4, np.int8)},
         "expected the output-channel axis 0"),
        ({"w_axis": None}, "without an explicit axis"),
        ({"w_zp": np.zeros(3, np.int8)}, "3 values for 8 scales"),
        ({"w": np.full((8, 4, 3, 3), -128, np.int8)}, "holds -128"),
    ],
)
def test_each_rule_catches_its_violation(changes: dict[str, object], fragment: str) -> None:
    problems = tensorrt_qdq_problems(clean_conv(**changes))
    assert any(fragment in p for p in problems), problems


def test_a_quantised_scalar_constant_is_named() -> None:
    """What NVIDIA's builder rejected in our first INT8 graph: GELU's `+ 1.0` as a rank-0 int8 initializer."""
    nodes = [
        helper.make_node("DequantizeLinear", ["one_q", "one_scale", "one_zp"], ["one"], name="dq_one"),
        helper.make_node("Add", ["x", "one"], ["y"], name="gelu_add"),
    ]
    inits = [init("one_q", np.int8(127)), init("one_scale", np.float32(1 / 127)), init("one_zp", np.int8(0))]
    problems = tensorrt_qdq_problems(graph_model(nodes, inits))
    assert len(problems) == 1 and "is a scalar (rank 0)" in problems[0] and "dq_one" in problems[0]


def test_per_channel_activations_and_int8_outside_qdq_are_named() -> None:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q_x", axis=1),
        helper.make_node("Cast", ["xq"], ["y"], name="cast", to=TensorProto.FLOAT),
    ]
    inits = [init("s", np.full(4, 0.1, np.float32)), init("zp", np.zeros(4, np.int8))]
    problems = tensorrt_qdq_problems(graph_model(nodes, inits))
    assert any("feeds ['Cast']" in p for p in problems) and any("per tensor" in p for p in problems), problems


def test_int32_biases_are_refused() -> None:
    nodes = [
        helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], name="dq_bias"),
        helper.make_node("Add", ["x", "bd"], ["y"], name="add"),
    ]
    inits = [init("b", np.ones(8, np.int32)), init("bs", np.float32(0.001))]
    assert any("int32 (bias)" in p for p in tensorrt_qdq_problems(graph_model(nodes, inits)))


def test_constant_operands_are_found_through_constant_subgraphs() -> None:
    nodes = [
        helper.make_node("Constant", [], ["half"], name="c", value=numpy_helper.from_array(np.float32(0.5))),
        helper.make_node("Cast", ["half"], ["half32"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Add", ["x", "half32"], ["a"], name="scalar_add"),
        helper.make_node("Add", ["a", "x"], ["b"], name="residual_add"),
        helper.make_node("MatMul", ["b", "w"], ["y"], name="matmul"),
    ]
    model = graph_model(nodes, [init("w", np.ones((8, 8), np.float32))])
    assert {"half", "half32", "w"} <= constant_tensors(model.graph)
    assert constant_operand_nodes(model.graph, ["Add", "MatMul"]) == ["scalar_add"]  # MatMul weights are weights


@pytest.mark.slow
def test_the_tensorrt_flavour_of_a_real_encoder_keeps_every_rule(tiny_onnx_dir: Path, calib_photos: Path,
                                                                 tmp_path: Path) -> None:
    """The tiny model's encoder (ResNet blocks, attention, GELU, biases, residual Adds) quantised with the shipped
    defaults."""
    import shutil

    from sgjnd.cli import main

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, model_dir)
    assert main(["calibrate", str(model_dir), "--images", str(calib_photos), "--precision", "int8", "--target",
                 "tensorrt", "--num-patches", "16", "--head", "int8", "--no-report", "--quiet"]) == 0
    for graph in ("encoder", "head"):
        model = onnx.load(str(model_dir / f"{graph}.int8.onnx"))
        assert tensorrt_qdq_problems(model) == []
        dequantised = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
        constants = constant_tensors(model.graph)
        for node in model.graph.node:  # no element-wise op reads a dequantised constant
            if node.op_type in ("Add", "Mul", "Sub", "Div"):
                assert not any(i in dequantised and i in constants for i in node.input), node.name
        # TensorRT's placement advice: no Q/DQ on the outputs of weighted ops (a bias Add or the main branch of a
        # residual Add fuses into the kernel) except a shortcut conv's, which is the residual input of its Add, and
        # one read only by other weighted ops (a projection feeding the attention's key and value convolutions):
        # their int8 input, which TensorRT fuses into the producer as an int8 output
        weighted_outputs = {n.output[0] for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")}
        for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in weighted_outputs):
            dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
            readers = [n for n in model.graph.node if dq.output[0] in n.input]
            if readers and all(n.op_type in ("Conv", "Gemm", "MatMul") for n in readers):
                continue
            assert [n.op_type for n in readers] == ["Add"], (q.input[0], [n.name for n in readers])
            other = next(i for i in readers[0].input if i != dq.output[0])
            assert other in weighted_outputs, (readers[0].name, "the main branch should feed the Add unquantised")


def test_the_main_branch_of_a_residual_add_is_the_fusible_one() -> None:
    """Identity block: x -> conv -> conv -> Add(x); downsample block: x -> conv -> conv -> Add(x -> conv)."""
    w = init("w", np.ones((4, 4, 1, 1), np.float32))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a1"], name="a1"),
        helper.make_node("Conv", ["a1", "w"], ["a2"], name="a2"),
        helper.make_node("Add", ["x", "a2"], ["s1"], name="identity_add"),
        helper.make_node("Conv", ["s1", "w"], ["b1"], name="b1"),
        helper.make_node("Conv", ["b1", "w"], ["b2"], name="b2"),
        helper.make_node("Conv", ["s1", "w"], ["shortcut"], name="shortcut"),
        helper.make_node("Add", ["shortcut", "b2"], ["y"], name="downsample_add"),
    ]
    fusible = fusible_add_inputs(graph_model(nodes, [w]).graph)
    assert fusible == {"identity_add": "a2", "downsample_add": "b2"}


def test_dropping_an_add_input_qdq_rewires_it_and_removes_what_is_left() -> None:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq"),
        helper.make_node("Add", ["xd", "x"], ["y"], name="add"),
    ]
    model = graph_model(nodes, [init("s", np.float32(0.1)), init("zp", np.int8(0))])
    assert drop_input_qdq(model, {"add": "x"}) == 1
    assert [n.op_type for n in model.graph.node] == ["Add"] and list(model.graph.node[0].input) == ["x", "x"]
    assert not model.graph.initializer
