"""Files, outputs and sidecars (issue 15, classes 1, 6 and 8): the rows of docs/errors.md "Files, outputs and
sidecars", through the CLI: exit code, one stderr line, and an existing file left byte for byte as it was."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import model_args

from sgjnd.cli import EXIT_BROKEN_PIPE, main
from sgjnd.errors import ImageError, SpecError, UsageError
from sgjnd.fileio import check_output_file, read_regular_file, write_atomic
from sgjnd.jobs.results_log import ResultLog, is_results_log
from sgjnd.spec import Sidecar, read_sidecar, sidecar_path


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sgjnd {command}: error: ")
    return lines[0]


# -- class 1: an existing output that is not ours is refused and left intact ---------------------------------------


def test_predict_out_refuses_an_image_and_leaves_it_intact(
    tiny_onnx_dir: Path, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.png"
    victim.write_bytes(photos[0].read_bytes())
    before = victim.read_bytes()
    code = main(["predict", str(photos[1]), *model_args(tiny_onnx_dir), "--out", str(victim)])
    assert code == 2
    line = one_error_line(capsys.readouterr().err, "predict")
    assert "is not a results file (.jsonl) written by sgjnd" in line and "left unchanged" in line
    assert victim.read_bytes() == before


@pytest.mark.parametrize(
    "content",
    [b"some notes\nwithout json", b'{"a": 1}\n', b"no newline at all", b"\x89PNG\r\n\x1a\n\x00\x00"],
)
def test_result_log_opens_only_ours(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="not a results file"), ResultLog(path):
        pass
    assert path.read_bytes() == content


def test_result_log_resumes_ours_and_cuts_its_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"")
    assert is_results_log(path)
    with ResultLog(path) as log:
        log.append({"source": "a.png", "path": "/x/a.png", "sha256": "00"})
    path.write_bytes(path.read_bytes() + b'{"source": "b.png", "pa')  # a kill mid-line
    with ResultLog(path) as log:
        assert log.loaded == 1 and log.torn_bytes > 0
    only_torn = tmp_path / "t.jsonl"
    only_torn.write_bytes(b'{"source": "a.png", "path"')  # killed while writing the first record
    assert is_results_log(only_torn)


@pytest.mark.parametrize("special", ["/dev/full", "/dev/stdout", "/dev/null", "fifo", "folder"])
def test_outputs_must_be_regular_files(tmp_path: Path, special: str) -> None:
    if special == "fifo":
        path = tmp_path / "out.fifo"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path / "out.json"
        path.mkdir()
    else:
        path = Path(special)
        if not path.exists():
            pytest.skip(f"{special} is not on this machine")
    with pytest.raises(UsageError, match=r"not a regular file|is a folder|system file"):
        check_output_file(path, what="JSON report")
    with pytest.raises(UsageError, match=r"not a regular file|is a folder|system file"):
        write_atomic(path, b"x")
    with pytest.raises(UsageError, match=r"not a regular file|is a folder|system file"), ResultLog(path):
        pass


def test_predict_out_dev_full_is_refused_before_the_model_loads(
    tiny_onnx_dir: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    assert main(["predict", str(photos[0]), *model_args(tiny_onnx_dir), "--out", "/dev/full"]) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err, "predict")


def test_compare_json_refuses_a_file_not_ours(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "notes.json"
    victim.write_bytes(b'{"mine": true}\n')
    assert main(["compare", "--json", str(victim), "--ref", "torch:nowhere.pt", "--target", "onnxruntime:nowhere"]) == 2
    assert "not a JSON report written by sgjnd" in one_error_line(capsys.readouterr().err, "compare")
    assert victim.read_bytes() == b'{"mine": true}\n'


def test_write_errors_are_one_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(UsageError, match="cannot write"):
        write_atomic(blocker / "here.json", b"x")


def test_folder_outputs_must_be_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "bench-output"
    victim.write_bytes(b"keep me")
    assert main(["bench", "-o", str(victim), "--results", "x.json", "--compare", "y.json"]) == 2
    assert "not a folder" in one_error_line(capsys.readouterr().err, "bench")
    assert victim.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["bench", "--results", "{d}/new.json", "--compare", "{d}/old.json"], "compare.md"),
        (["bench", "--results", "{d}/new.json", "--compare", "{d}/old.json"], "compare.json"),
        (["bench", "--profile", "quick"], "bench.json"),
        (["bench", "--profile", "quick"], "latency_vs_batch.png"),
        (["evaluate", "{d}/model", "{d}/data"], "per_image.csv"),
        (["evaluate", "{d}/model", "{d}/data"], "metrics.json"),
        (["train", "{config}"], "run.json"),
        (["train", "{config}"], "best.pt"),
        (["train", "{config}"], "metrics.jsonl"),
    ],
)
def test_files_inside_output_folders_that_are_not_ours_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], name: str
) -> None:
    """A folder output may be reused, but a file in it under a name the command writes must be one sgjnd wrote:
    the user's file of that name is left byte for byte, and the command stops (exit 2) before any work."""
    folder = tmp_path / "out"
    folder.mkdir()
    victim = folder / name
    victim.write_bytes(b"the user's own file")
    config = Path(__file__).resolve().parents[1] / "configs" / "demo_effl0_proxy.toml"
    args = [a.format(d=tmp_path, config=config) for a in command] + ["-o", str(folder)]
    assert main(args) == 2
    line = one_error_line(capsys.readouterr().err, command[0])
    assert f"holds {name}, which this command writes, but sgjnd did not write it" in line
    assert victim.read_bytes() == b"the user's own file" and sorted(p.name for p in folder.iterdir()) == [name]


def test_our_own_earlier_outputs_may_be_replaced(tmp_path: Path) -> None:
    from sgjnd.bench.api import output_files
    from sgjnd.fileio import check_output_files
    from sgjnd.train.evaluate import report_files
    from sgjnd.train.loop import run_files

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "bench.md").write_text("# sgjnd bench: profile `quick`\n")
    (folder / "bench.json").write_text('{"format": 1, "tool": "sgjnd bench", "rows": []}')
    (folder / "metrics.json").write_text('{"metrics": {}, "dataset": "d", "search": {}}')
    (folder / "run.json").write_text('{"config": {}}')
    (folder / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (folder / "best.pt").write_bytes(b"PK")  # in a run folder (run.json is ours)
    (folder / "unrelated.txt").write_text("other files are none of our business")
    for files in (output_files(), report_files(), run_files()):
        check_output_files(folder, files, what="output folder")


# -- class 6: inputs must be regular files, read bounded ------------------------------------------------------------


def test_special_inputs_are_refused_without_reading(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # no writer: reading would hang
    with pytest.raises(ImageError, match="a FIFO"):
        read_regular_file(fifo, max_bytes=1 << 20)
    if Path("/dev/zero").exists():
        zero = tmp_path / "zero.png"
        zero.symlink_to("/dev/zero")
        with pytest.raises(ImageError, match="a character device, not a regular file"):
            read_regular_file(zero, max_bytes=1 << 20)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x00" * 1000)
    with pytest.raises(ImageError, match="larger than the limit of 999 bytes"):
        read_regular_file(big, max_bytes=999)


def test_predict_fails_special_files_per_file(
    tiny_onnx_dir: Path, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    if Path("/dev/zero").exists():
        (folder / "zero.png").symlink_to("/dev/zero")
    code = main(["predict", str(folder), *model_args(tiny_onnx_dir), "--json"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    assert "pipe.jpg is a FIFO (named pipe), not a regular file" in err


# -- class 8: one line, never a traceback ----------------------------------------------------------------------------


def test_non_utf8_file_name_prints(
    tiny_onnx_dir: Path, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = os.fsdecode(b"caf\xe9.png")
    path = tmp_path / name
    try:
        path.write_bytes(photos[0].read_bytes())
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="utf-8", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["predict", str(path), *model_args(tiny_onnx_dir)]) == 0
    assert b"caf\xe9.png" in buffer.getvalue()  # the name's own bytes, as ls would show them
    assert stdout.errors == "strict"  # restored


def test_broken_pipe_exits_quietly(tiny_onnx_dir: Path, photos: list[Path]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone, as after `| head -1`
    script = "import sys; from sgjnd.cli import main; sys.exit(main(sys.argv[1:]))"
    args = ["predict", *map(str, photos[:2]), *model_args(tiny_onnx_dir), "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], stdout=write_end, stderr=subprocess.PIPE, timeout=300, check=False
    )
    os.close(write_end)
    assert proc.returncode == EXIT_BROKEN_PIPE
    assert b"Traceback" not in proc.stderr and b"BrokenPipeError" not in proc.stderr


# -- sidecar values --------------------------------------------------------------------------------------------------


@pytest.fixture
def model_copy(tiny_onnx_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    copy.mkdir()
    for item in tiny_onnx_dir.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    return copy


def _edit_sidecar(model_dir: Path, change: object) -> Path:
    side = sidecar_path(model_dir / "encoder.onnx")
    data = json.loads(side.read_text())
    if callable(change):
        change(data)
    else:
        data = change
    side.write_text(json.dumps(data, allow_nan=True))
    return side


def _set(*keys: str, value: object) -> object:
    def change(data: dict[str, object]) -> None:
        target = data
        for key in keys[:-1]:
            target = target[key]  # type: ignore[assignment, index]
        target[keys[-1]] = value  # type: ignore[index]

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("model", "std", value=[0.0, 0.2, 0.2]), "model.std must be three finite numbers above 0"),
        (_set("model", "std", value=[-1, 0.2, 0.2]), "model.std must be three finite numbers above 0"),
        (_set("model", "mean", value=[math.nan, 0.4, 0.4]), "model.mean must be three finite numbers"),
        (_set("model", "mean", value=[math.inf, 0.4, 0.4]), "model.mean must be three finite numbers"),
        (_set("model", "patch_size", value=0), "model.patch_size must be an integer above 0"),
        (_set("model", "patch_size", value="64"), "model.patch_size must be an integer"),
        (_set("model", "feature_dim", value=-4), "model.feature_dim must be an integer above 0"),
        (_set("model", "jpeg", value=[1, 2]), "model.jpeg must be a JSON object"),
        (_set("model", value="x"), "model must be a JSON object"),
        (_set("artifact", "sha256", value=7), "artifact.sha256 must be a string"),
        ([1, 2, 3], "is not a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply|not a JSON object|not a readable"),
    ],
)
def test_bad_sidecar_values_are_spec_errors(
    model_copy: Path, photos: list[Path], change: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if isinstance(change, str):
        side = sidecar_path(model_copy / "encoder.onnx")
        side.write_text(change)
    else:
        _edit_sidecar(model_copy, change)
    with pytest.raises(SpecError, match=message):
        read_sidecar(model_copy / "encoder.onnx", rebuild_hint="sgjnd export CKPT -o DIR")
    code = main(["predict", str(photos[0]), *model_args(model_copy)])
    assert code == 4
    line = one_error_line(capsys.readouterr().err, "predict")
    assert "sgjnd export" in line


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_sidecars_give_a_spec_or_a_spec_error(data: st.DataObject) -> None:
    """Random mutations of a valid sidecar: a valid Sidecar or a SpecError, never another exception."""
    from sgjnd.spec import ArtifactInfo, ModelSpec

    valid = json.loads(
        Sidecar(ModelSpec("sgjnd_tiny", 64, 32), ArtifactInfo("onnx", "encoder.onnx", "0" * 64, "encoder")).to_json()
    )
    leaves = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
        max_leaves=10,
    )
    doc = json.loads(json.dumps(valid))
    for _ in range(data.draw(st.integers(1, 4))):
        target = doc
        path = []
        while isinstance(target, dict) and target and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(target)))
            if not isinstance(target[key], dict):
                break
            path.append(key)
            target = target[key]
        if not isinstance(target, dict) or not target:
            continue
        key = data.draw(st.sampled_from(sorted(target)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            target[key] = data.draw(leaves)
        elif action == "delete":
            del target[key]
        else:
            target[data.draw(st.text(max_size=6))] = data.draw(leaves)
    try:
        sidecar = Sidecar.from_dict(doc)
    except SpecError:
        return
    assert sidecar.model.patch_size > 0 and all(s > 0 and math.isfinite(s) for s in sidecar.model.std)


# -- the other commands that write a file the user names --------------------------------------------------------------


@pytest.mark.parametrize("command", ["calibrate", "label", "init"])
def test_other_outputs_refuse_a_file_not_ours(
    command: str, tiny_onnx_dir: Path, photos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`calibrate --save-patches`, `label -o` and `init -o` check their output before any work."""
    victim = tmp_path / {"calibrate": "patches.npz", "label": "labels.csv", "init": "model.pt"}[command]
    victim.write_bytes(b"somebody's data, not a file sgjnd wrote\n")
    before = victim.read_bytes()
    argv = {
        "calibrate": ["calibrate", str(tiny_onnx_dir), "--images", str(photos[0].parent), "--precision", "int8",
                      "--save-patches", str(victim), "--no-report", "--quiet"],
        "label": ["label", str(photos[0]), "-o", str(victim), "--quiet"],
        "init": ["init", "sgjnd_tiny", "--seed", "0", "-o", str(victim)],
    }[command]
    assert main(argv) == UsageError.exit_code
    line = one_error_line(capsys.readouterr().err, command)
    assert str(victim) in line and "not a" in line and "left unchanged" in line, line
    assert victim.read_bytes() == before
    assert not list(tiny_onnx_dir.glob(".calibrate-*"))  # nothing was started in the model directory


def test_artifacts_not_ours_are_never_overwritten(tiny_checkpoint: Path, tiny_onnx_dir: Path, tmp_path: Path) -> None:
    """export, calibrate and build refuse (before any work) to replace a graph, engine or sidecar sgjnd did not
    write under an artifact's name: a user's encoder.onnx stays byte for byte."""
    import shutil

    from sgjnd.calibration.pipeline import CalibrateConfig, calibrate_model
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.runtime.modeldir import check_artifacts_ours

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "encoder.onnx").write_bytes(b"someone's own graph")
    with pytest.raises(UsageError, match=r"holds encoder\.onnx, which this command writes, but sgjnd did not write it"):
        onnx_from_checkpoint(tiny_checkpoint, folder)
    assert (folder / "encoder.onnx").read_bytes() == b"someone's own graph" and len(list(folder.iterdir())) == 1

    model_dir = Path(shutil.copytree(tiny_onnx_dir, tmp_path / "exported"))
    (model_dir / "encoder.fp16.onnx.json").write_text("not a sidecar")
    with pytest.raises(UsageError, match=r"encoder\.fp16\.onnx\.json"):
        calibrate_model(model_dir, config=CalibrateConfig(precision="fp16", report=False, progress=False))
    assert (model_dir / "encoder.fp16.onnx.json").read_text() == "not a sidecar"
    # our own earlier export and its sidecars may be replaced, as before
    check_artifacts_ours([model_dir / "encoder.onnx", model_dir / "head.onnx"])
    again = onnx_from_checkpoint(tiny_checkpoint, model_dir)
    assert again.files["encoder"] == model_dir / "encoder.onnx"
