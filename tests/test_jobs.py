"""Batch jobs: input expansion, the kill-safe JSONL result log, the worker pool, and a real SIGKILL + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_bad import crop, encode

from sgjnd.cli import main
from sgjnd.errors import ImageError, UsageError
from sgjnd.fileio import sha256_file
from sgjnd.jobs.inputs import InputItem, expand_inputs
from sgjnd.jobs.results_log import ResultLog, item_key, json_safe
from sgjnd.jobs.runner import JobConfig, Skip, Tally, run_jobs

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--search", "bisect", "--max-patches", "2"]


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- inputs -----------------------------------------------------------------------------------------------------------


def test_folders_are_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in (
        "b.png",
        "a.JPG",
        "sub/c.webp",
        "sub/deeper/d.tif",
        "z/e.gif",
        "notes.md",
        ".hidden.png",
        ".cache/f.png",
        "sub/.g.jpg.tmp",
    ):
        _touch(root / name)
    items = list(expand_inputs([root]))
    assert [i.path.relative_to(root).as_posix() for i in items] == [
        "a.JPG",
        "b.png",
        "sub/c.webp",
        "sub/deeper/d.tif",
        "z/e.gif",
    ]
    assert all(i.root == root for i in items)


def test_walks_skip_excluded_paths_and_do_not_follow_folder_links(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "a.png")
    _touch(root / "out" / "a.jpg")  # the run's own output folder, inside the input folder
    (root / "loop").symlink_to(root, target_is_directory=True)
    items = list(expand_inputs([root], exclude=[root / "out"]))
    assert [i.path.name for i in items] == ["a.png"]


def test_lists_hold_paths_relative_to_themselves_with_comments_and_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "imgs" / "one.png")
    _touch(tmp_path / "imgs" / "sub" / "two.png")
    other = _touch(tmp_path / "elsewhere" / "three.anything")
    listing = tmp_path / "lists" / "todo.txt"
    listing.parent.mkdir()
    listing.write_text(f"# a comment\n\n../imgs/one.png\n  ../imgs/sub  \n{other}\n../missing.png\n")
    items = list(expand_inputs([listing]))
    assert [i.path.name for i in items] == ["one.png", "two.png", "three.anything", "missing.png"]
    assert items[0].root is None and items[1].root == listing.parent / "../imgs/sub"


def test_a_missing_list_is_refused_before_the_run(tmp_path: Path) -> None:
    from sgjnd.jobs.inputs import check_inputs

    with pytest.raises(UsageError, match="no such list file"):
        check_inputs([tmp_path / "nope.txt"])
    with pytest.raises(UsageError, match="no inputs"):
        check_inputs([])


# -- the result log ---------------------------------------------------------------------------------------------------


def test_result_log_records_one_line_per_record_and_remembers_them(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "r.jsonl"
    with ResultLog(path) as log:
        log.append({"path": "/a", "sha256": "1", "x": float("nan"), "y": np.float32(1.5), "z": np.int64(3)})
        log.append({"path": "/b", "sha256": "2", "error": "bad", "error_type": "ImageError"})
        assert log.is_done("/a", "1") and log.is_done("/b", "2") and not log.is_done("/a", "other")
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert json.loads(lines[0]) == {"path": "/a", "sha256": "1", "x": None, "y": 1.5, "z": 3}
    with ResultLog(path) as log:
        assert log.loaded == 2 and log.is_done("/a", "1") and log.is_done("/b", "2")
    with ResultLog(path, retry_failed=True) as log:
        assert log.is_done("/a", "1") and not log.is_done("/b", "2")


def test_a_torn_last_line_is_cut_off_and_garbage_lines_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = json.dumps({"path": "/a", "sha256": "1"}) + "\n"
    path.write_text(good + "not json at all\n" + '{"path": "/b", "sha2')
    with ResultLog(path) as log:
        assert log.torn_bytes == len('{"path": "/b", "sha2') and log.unreadable == 1 and log.loaded == 1
        assert not log.is_done("/b", None)
        log.append({"path": "/b", "sha256": "2"})
    assert path.read_text() == good + "not json at all\n" + json.dumps({"path": "/b", "sha256": "2"}) + "\n"


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with ResultLog(path), pytest.raises(UsageError, match="locked by another running sgjnd job"):
        ResultLog(path).__enter__()
    with ResultLog(path):  # released on close
        pass


def test_result_log_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="fsync_every"):
        ResultLog(tmp_path / "r.jsonl", fsync_every=-1)
    with pytest.raises(UsageError, match="is a folder"):
        ResultLog(tmp_path).__enter__()
    with pytest.raises(UsageError, match="not open"):
        ResultLog(tmp_path / "r.jsonl").append({"path": "/a"})


def test_json_safe_makes_strict_json() -> None:
    value = {"a": [float("inf"), np.float64(2.0), (1, np.nan)], 3: {"b": np.int32(7)}}
    assert json_safe(value) == {"a": [None, 2.0, [1, None]], "3": {"b": 7}}


# -- the worker pool --------------------------------------------------------------------------------------------------


class EchoJob:
    """Uppercases the file; fails on 'bad', raises a bug on 'bug', skips on 'skip'; records the threads used."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: set[str] = set()

    def prepare(self, item: InputItem) -> str:
        if item.path.name.startswith("skip"):
            raise Skip("told to")
        return item.path.name

    def process(self, item: InputItem, data: bytes, prepared: Any) -> tuple[dict[str, Any], str]:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay * (1 + len(data) % 3))  # uneven durations: completion order differs from input order
        if data == b"bad":
            raise ImageError("image bytes: broken")
        if data == b"bug":
            raise ZeroDivisionError("oops")
        return {"upper": data.decode().upper(), "name": prepared}, data.decode()


def test_outcomes_come_in_input_order_with_failures_and_skips(tmp_path: Path) -> None:
    contents = [b"a", b"bb", b"bad", b"ccc", b"bug", b"d", b"ee"]
    paths = [_touch(tmp_path / f"{i:02d}.png", c) for i, c in enumerate(contents)]
    paths.insert(3, _touch(tmp_path / "skip.png", b"s"))
    paths.append(tmp_path / "missing.png")
    paths.append(paths[0])  # listed twice
    job = EchoJob(delay=0.01)
    outcomes = list(run_jobs((InputItem(p) for p in paths), job, config=JobConfig(workers=3, prefetch=1)))
    assert [o.item.path for o in outcomes] == paths
    assert [o.status for o in outcomes] == [
        "done",
        "done",
        "failed",
        "skipped",
        "done",
        "failed",
        "done",
        "done",
        "failed",
        "skipped",
    ]
    assert outcomes[0].record == {
        "source": str(paths[0]),
        "path": item_key(paths[0]),
        "sha256": sha256_file(paths[0]),
        "upper": "A",
        "name": "00.png",
    }
    bad = outcomes[2].record
    assert bad is not None and bad["error_type"] == "ImageError" and bad["exit_code"] == 3
    assert bad["error"] == f"{paths[2]}: broken"  # the decoded bytes are named by their file
    assert outcomes[5].record is not None and outcomes[5].record["error_type"] == "InternalError"
    assert "a bug in sgjnd" in outcomes[5].reason
    missing = outcomes[8].record
    assert missing is not None and missing["sha256"] is None and "no such file" in missing["error"]
    assert outcomes[9].reason == "listed more than once; processed once"
    assert len(job.threads) > 1
    tally = Tally()
    for o in outcomes:
        tally.add(o)
    assert (tally.done, tally.skipped, tally.failed) == (5, 2, 3)
    assert tally.exit_code == 1  # ImageError (3) and InternalError (1) differ


def test_exit_code_is_the_shared_code_of_the_failures() -> None:
    tally = Tally()
    assert tally.exit_code == 0
    for _ in range(2):
        tally.add(run_outcome_failed(3))
    assert tally.exit_code == 3


def run_outcome_failed(code: int) -> Any:
    from sgjnd.jobs.runner import Outcome

    return Outcome(InputItem(Path("x")), "failed", exit_code=code)


def test_inputs_are_consumed_lazily_within_the_window(tmp_path: Path) -> None:
    path = _touch(tmp_path / "a.png", b"a")
    pulled = 0

    def items() -> Iterator[InputItem]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield InputItem(path)

    outcomes = run_jobs(items(), EchoJob(), config=JobConfig(workers=2, prefetch=3))
    next(outcomes)
    assert pulled <= 2 + 3 + 1
    outcomes.close()


def test_done_files_are_skipped_by_path_and_content(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a.png", b"a")
    b = _touch(tmp_path / "b.png", b"b")
    done = {(item_key(a), sha256_file(a))}
    outcomes = list(run_jobs([InputItem(a), InputItem(b)], EchoJob(), done=lambda p, s: (p, s) in done))
    assert [o.status for o in outcomes] == ["skipped", "done"]
    a.write_bytes(b"changed")
    outcomes = list(run_jobs([InputItem(a)], EchoJob(), done=lambda p, s: (p, s) in done))
    assert [o.status for o in outcomes] == ["done"]  # same path, new content: done again


# -- through the CLI, with the tiny model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 small images in a tree (JPEG and PNG crops of the photographs), plus a file that is not an image."""
    root = tmp_path_factory.mktemp("batch") / "images"
    for i in range(12):
        image = crop(photos[i % len(photos)], 96, y=8 * i, x=-8 * i)
        sub = root / ("a" if i < 6 else "b/c")
        _touch(sub / f"img{i:02d}.{'png' if i % 2 else 'jpg'}", encode(image, ".png" if i % 2 else ".jpg"))
    _touch(root / "b" / "broken.jpg", b"\xff\xd8\xff\xe0 truncated")
    return root


def _records(path: Path) -> dict[str, dict[str, Any]]:
    """The records of a results file by path, without the timings (which vary); duplicates are an error."""
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record.pop("timings_ms", None)
        assert record["path"] not in out, f"duplicate record for {record['path']}"
        out[record["path"]] = record
    return out


def test_cli_batch_writes_results_and_resumes(
    folder: Path, tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.jsonl"
    listing = tmp_path / "more.txt"
    listing.write_text(f"{folder / 'a' / 'img00.jpg'}\n")  # a duplicate, from a list
    args = ["predict", str(folder), str(listing), "--backend", "onnxruntime", "--model", str(tiny_onnx_dir), *FAST]
    assert main([*args, "--out", str(out)]) == 3  # the broken file: an ImageError
    stdout, err = capsys.readouterr()
    assert stdout == ""
    assert "sgjnd predict: 12 done, 1 skipped, 1 failed in" in err and f"-> {out}" in err
    records = _records(out)
    assert len(records) == 13
    broken = records[str((folder / "b" / "broken.jpg").resolve())]
    assert broken["error_type"] == "ImageError" and "truncated or corrupt" in broken["error"]
    assert all("recommended_qf" in r and r["sha256"] for r in records.values() if "error" not in r)

    assert main([*args, "--out", str(out)]) == 0  # nothing left to do; the failure is not retried
    assert "0 done, 14 skipped, 0 failed" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--retry-failed"]) == 3
    assert "0 done, 13 skipped, 1 failed" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 14  # the retried failure appended once more


def test_plain_runs_print_a_table_or_json(
    folder: Path, tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = [str(folder / "a" / "img00.jpg"), str(folder / "a" / "img01.png")]
    model = ["--backend", "onnxruntime", "--model", str(tiny_onnx_dir), *FAST]
    assert main(["predict", *files, *model]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("image") and set(out[1]) == {"-"} and len(out) == 4
    assert main(["predict", *files, *model, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in rows] == files and "path" not in rows[0]  # the plain JSON is JNDResult.to_dict()


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(
    folder: Path, tiny_onnx_dir: Path, tmp_path: Path
) -> None:
    model = ["--backend", "onnxruntime", "--model", str(tiny_onnx_dir), *FAST]
    reference = tmp_path / "reference.jsonl"
    assert main(["predict", str(folder), *model, "--workers", "1", "--out", str(reference)]) == 3

    out = tmp_path / "killed.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "sgjnd.cli", "predict", str(folder), *model, "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.005)
        assert proc.stderr is not None
        assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()  # type: ignore[union-attr]
    partial = out.read_bytes()
    written = partial.count(b"\n")
    assert 3 <= written < 13
    with open(out, "ab") as fh:  # what a kill in the middle of a write would leave
        fh.write(b'{"source": "' + str(folder).encode() + b"/a/img0")

    assert main(["predict", str(folder), *model, "--workers", "2", "--out", str(out)]) == 3
    assert out.read_bytes().startswith(partial)  # earlier records untouched, the torn line gone
    assert _records(out) == _records(reference)  # nothing lost, nothing duplicated, same results
