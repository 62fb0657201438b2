"""Checkpoints: round trip, sidecar, and every way a file can fail to be a checkpoint."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path

import pytest
import torch

import sgjnd
from sgjnd.errors import CheckpointError, SpecError, UsageError
from sgjnd.fileio import sha256_bytes, sha256_file
from sgjnd.model import (
    SGJND,
    checkpoint_sha256,
    create_model,
    diff_state_dict,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from sgjnd.spec import ArtifactInfo, Sidecar, read_sidecar, sidecar_path, write_sidecar

WEIGHTS = "UNTRAINED: deterministic random initialisation from seed 0"


@pytest.fixture(scope="module")
def tiny() -> SGJND:
    return create_model("sgjnd_tiny", seed=0)


@pytest.fixture
def saved(tmp_path: Path, tiny: SGJND) -> Path:
    path = tmp_path / "tiny.pt"
    save_checkpoint(tiny, path, weights=WEIGHTS)
    return path


def write_raw(path: Path, payload: object, model: SGJND) -> Path:
    """Write ``payload`` with torch.save and a sidecar whose hash matches it, to get past the sidecar check."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.write_bytes(buffer.getvalue())
    info = ArtifactInfo(kind="checkpoint", file=path.name, sha256=sha256_bytes(buffer.getvalue()), weights="test")
    write_sidecar(path, Sidecar(model=model.spec, artifact=info))
    return path


def payload_of(model: SGJND, state: dict[str, torch.Tensor] | None = None) -> dict[str, object]:
    return {"format": 1, "model": dataclasses.asdict(model.spec), "state_dict": state or dict(model.state_dict())}


def test_round_trip_gives_identical_outputs(tiny: SGJND, saved: Path) -> None:
    loaded = load_checkpoint(saved)
    assert not loaded.training
    x = torch.randn(3, 3, 64, 64)
    y = x + 0.2 * torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.encoder(x), tiny.encoder(x))
        for a, b in zip(loaded(x, y), tiny(x, y), strict=True):
            assert torch.equal(a, b)
    assert loaded.spec == tiny.spec


def test_sidecar_records_spec_hash_weights_and_producer(tiny: SGJND, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "model.pt"
    sidecar = save_checkpoint(tiny, path, weights=WEIGHTS)
    assert sidecar_path(path).is_file()
    assert sidecar.artifact.kind == "checkpoint" and sidecar.artifact.file == "model.pt"
    assert sidecar.artifact.sha256 == sha256_file(path) == checkpoint_sha256(path)
    assert sidecar.artifact.weights == WEIGHTS
    assert sidecar.artifact.producer == {"torch": torch.__version__, "sgjnd": sgjnd.__version__}
    assert tiny.checkpoint_info == sidecar.artifact
    # the JSON sidecar round-trips to the same spec and provenance
    reread = read_sidecar(path)
    assert reread == sidecar
    assert reread.model == tiny.spec
    assert json.loads(sidecar_path(path).read_text())["model"]["arch"]["blocks"] == [1, 1, 1, 1]
    loaded = load_checkpoint(path)
    assert loaded.checkpoint_info == sidecar.artifact
    assert {p.name for p in path.parent.iterdir()} == {"model.pt", "model.pt.json"}  # no temporary files left


def test_equal_models_give_equal_files(tiny: SGJND, tmp_path: Path) -> None:
    a = save_checkpoint(tiny, tmp_path / "a.pt", weights=WEIGHTS)
    b = save_checkpoint(create_model("sgjnd_tiny", seed=0), tmp_path / "b.pt", weights=WEIGHTS)
    assert a.artifact.sha256 == b.artifact.sha256


def test_weights_statement_is_required(tiny: SGJND, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="weights must state"):
        save_checkpoint(tiny, tmp_path / "x.pt", weights="  ")
    with pytest.raises(UsageError, match="expects an SGJND network"):
        save_checkpoint(torch.nn.Linear(1, 1), tmp_path / "x.pt", weights=WEIGHTS)  # type: ignore[arg-type]
    assert not (tmp_path / "x.pt").exists()


class NotData:
    """A class a weights-only unpickler must refuse to instantiate."""


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", r"is empty \(0 bytes\): expected an sgjnd checkpoint"),
        (b"name,score\nimg1,0.5\n", r"expected an sgjnd checkpoint .*, got 20 bytes of text starting 'name,score"),
        (bytes(range(256)) * 4, r"got 1024 bytes of binary data starting 0x0001020304050607"),
    ],
    ids=["empty", "text", "random-bytes"],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_truncated_checkpoint(saved: Path) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"zip archive of .* torch cannot read"):
        load_checkpoint(saved)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"format": 1, "evil": NotData()}, path)
    with pytest.raises(CheckpointError, match="holding Python objects beyond tensors") as info:
        load_checkpoint(path)
    assert re.search(r"refused it: Unsupported global: GLOBAL \S*NotData was not an allowed global", str(info.value))
    assert "add_safe_globals" not in str(info.value)  # no advice to loosen the loader


def test_plain_state_dict_is_named_as_such(tiny: SGJND, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"plain state_dict of \d+ tensors .*load_backbone_weights"):
        load_checkpoint(path)


def test_other_objects_and_formats(tiny: SGJND, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="got a torch file holding a Tensor"):
        load_checkpoint(path)
    write_raw(path, {**payload_of(tiny), "format": 2}, tiny)
    with pytest.raises(CheckpointError, match="format 2; this version of sgjnd reads format 1"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_missing_unexpected_and_misshapen_keys_are_listed(tiny: SGJND, tmp_path: Path) -> None:
    state = dict(tiny.state_dict())
    del state["head.mlp_q.3.bias"]
    del state["encoder.proj.0.weight"]
    state["encoder.extra.weight"] = torch.zeros(2)
    state["head.mlp_w.0.weight"] = torch.zeros(5, 5)
    path = write_raw(tmp_path / "model.pt", payload_of(tiny, state), tiny)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "does not fit the model its spec names (sgjnd_tiny" in message
    assert "2 missing key(s): encoder.proj.0.weight, head.mlp_q.3.bias" in message
    assert "1 unexpected key(s): encoder.extra.weight" in message
    assert "1 shape mismatch(es): head.mlp_w.0.weight expected (32, 384) got (5, 5)" in message


def test_many_missing_keys_are_counted(tiny: SGJND) -> None:
    diff = diff_state_dict(tiny.state_dict(), {})
    text = diff.describe(limit=3)
    assert text.startswith(f"{len(tiny.state_dict())} missing key(s): ")
    assert f"… and {len(tiny.state_dict()) - 3} more" in text
    assert diff_state_dict(tiny.state_dict(), tiny.state_dict()).ok


def test_checkpoint_of_another_variant_does_not_fit(tiny: SGJND, tmp_path: Path) -> None:
    wider = create_model("sgjnd_tiny", seed=0, dim=16)
    path = write_raw(tmp_path / "model.pt", payload_of(tiny, dict(wider.state_dict())), tiny)
    with pytest.raises(
        CheckpointError, match=r"shape mismatch\(es\): encoder\.proj\.0\.weight expected \(32, 32, 1, 1\)"
    ):
        load_checkpoint(path)


def test_sidecar_hash_mismatch_is_a_spec_error(saved: Path) -> None:
    # replace the file with another valid checkpoint: only the hash can tell
    other = saved.with_name("other.pt")
    save_checkpoint(create_model("sgjnd_tiny", seed=1), other, weights=WEIGHTS)
    os.replace(other, saved)
    with pytest.raises(SpecError, match=r"does not match its sidecar: sha256 .* Regenerate it with: save the model"):
        load_checkpoint(saved)
    with pytest.raises(SpecError, match="does not match its sidecar"):
        checkpoint_sha256(saved)
    load_checkpoint(saved, verify_hash=False)  # an explicit opt-out still works


def test_missing_sidecar_is_a_spec_error(saved: Path) -> None:
    sidecar_path(saved).unlink()
    with pytest.raises(SpecError, match="has no spec sidecar"):
        load_checkpoint(saved)


def test_edited_sidecar_spec_is_refused(saved: Path) -> None:
    path = sidecar_path(saved)
    data = json.loads(path.read_text())
    data["model"]["patch_size"] = 128
    data["model"]["arch"]["patch_size"] = 128
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"differs from its sidecar in \['arch', 'patch_size'\]"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    "name", [n if n == "sgjnd_tiny" else pytest.param(n, marks=pytest.mark.slow) for n in list_models()]
)
def test_every_registered_variant_round_trips(name: str, tmp_path: Path) -> None:
    """Contract over the registry: each variant saves, reloads as the same class, spec and weights, and runs."""
    model = create_model(name, seed=0)
    path = tmp_path / f"{name}.pt"
    save_checkpoint(model, path, weights=WEIGHTS)
    loaded = load_checkpoint(path)
    assert type(loaded) is type(model) and loaded.spec == model.spec
    assert diff_state_dict(model.state_dict(), loaded.state_dict()).ok
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    x = torch.randn(1, 3, model.spec.patch_size, model.spec.patch_size)
    with torch.inference_mode():
        features = loaded.encoder(x)
        q, w = loaded.head(features, loaded.encoder(x + 0.1))
        assert torch.equal(features, model.encoder(x))
    assert features.shape == (1, model.spec.feature_dim) and q.shape == w.shape == (1,)
