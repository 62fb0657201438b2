"""Compression at the recommended quality: QF choice, metadata carried over, safe outputs, and the CLI."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fixtures_bad import (
    crop,
    encode,
    exif_tiff,
    fake_icc,
    jpeg_with_exif,
    jpeg_with_segments,
    pil_bytes,
    png_chunk,
    png_with_metadata,
    srgb_icc,
)

from sgjnd import cli
from sgjnd.compress import (
    CompressConfig,
    ImageMetadata,
    OutputGuard,
    choose_qf,
    exif_with_orientation,
    jpeg_with_metadata,
    read_metadata,
    write_output,
)
from sgjnd.errors import UsageError
from sgjnd.jobs.inputs import InputItem
from sgjnd.jobs.runner import Skip
from sgjnd.runtime.decode import decode_image

PIL = pytest.importorskip("PIL.Image")
PIL_OPS = pytest.importorskip("PIL.ImageOps")


def pil_info(data: bytes) -> tuple[bytes | None, dict[int, object], tuple[int, int]]:
    """ICC profile, EXIF IFD0 tags and size, as Pillow reads them from a file's bytes."""
    image = PIL.open(io.BytesIO(data))
    return image.info.get("icc_profile"), dict(image.getexif()), image.size


@pytest.fixture(scope="module")
def img(photos: list[Path]) -> np.ndarray:
    """A 96×128 crop: not square, so a rotation shows in the output's size."""
    return np.ascontiguousarray(crop(photos[0], 128)[:96])


# -- QF choice --------------------------------------------------------------------------------------------------------


def test_qf_is_the_recommendation_plus_margin_clamped() -> None:
    assert choose_qf(70, CompressConfig()) == (70, None)
    assert choose_qf(70, CompressConfig(margin=5)) == (75, None)
    qf, why = choose_qf(70, CompressConfig(margin=5, max_q=72))
    assert qf == 72 and why is not None and "clamped to 72" in why
    assert choose_qf(20, CompressConfig(min_q=40))[0] == 40
    qf, why = choose_qf(None, CompressConfig(max_q=95))
    assert qf == 95 and why is not None and "every candidate QF was judged visible" in why


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"min_q": 80, "max_q": 70}, "min-q <= max-q"), ({"baseline_q": 0}, "baseline"), ({"margin": 100}, "margin")],
)
def test_bad_quality_settings_are_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        CompressConfig(**kwargs)


# -- metadata ---------------------------------------------------------------------------------------------------------


def test_jpeg_exif_and_icc_are_read_and_the_orientation_reset(img: np.ndarray) -> None:
    icc = srgb_icc()
    meta = read_metadata(jpeg_with_exif(img, 6, icc=icc))
    assert meta.icc == icc and meta.kept == ("exif", "icc")
    assert meta.exif is not None and exif_with_orientation(meta.exif, 1)[1] == 1
    assert "EXIF orientation 6 reset to 1" in " ".join(meta.notes)
    out = jpeg_with_metadata(encode(img, ".jpg"), meta)
    got_icc, tags, _ = pil_info(out)
    assert got_icc == icc and tags[0x0112] == 1 and tags[0x010F] == "sgjnd-test"


def test_png_and_webp_metadata_are_read(img: np.ndarray) -> None:
    icc = srgb_icc()
    png = read_metadata(png_with_metadata(img, orientation=3, icc=icc))
    assert png.icc == icc and png.exif is not None and png.exif.startswith(b"MM")
    exif = PIL.Exif()
    exif[0x0112] = 8
    exif[0x010F] = "webp-maker"
    webp = read_metadata(pil_bytes(img, "WEBP", icc_profile=icc, exif=exif.tobytes()))
    assert webp.icc == icc and webp.exif is not None
    out = jpeg_with_metadata(encode(img, ".jpg"), webp)
    got_icc, tags, _ = pil_info(out)
    assert got_icc == icc and tags[0x0112] == 1 and tags[0x010F] == "webp-maker"


def test_an_orientation_the_decoder_did_not_apply_is_reset_with_a_note_that_says_so(img: np.ndarray) -> None:
    """A PNG eXIf chunk that keeps JPEG's Exif\\0\\0 prefix: libpng drops it, so OpenCV (and we) leave the pixels as
    stored, while the EXIF is still copied, its orientation reset, so that no reader turns the pixels either."""
    png = encode(img, ".png")
    data = png[:33] + png_chunk(b"eXIf", b"Exif\x00\x00" + exif_tiff(6, byte_order=">")) + png[33:]
    assert decode_image(data).orientation == 1
    meta = read_metadata(data)
    assert meta.exif is not None and exif_with_orientation(meta.exif, 1)[1] == 1
    assert "EXIF orientation 6 reset to 1: the decoder did not apply it" in meta.notes
    upright = read_metadata(jpeg_with_exif(img, 6)).notes
    assert "EXIF orientation 6 reset to 1: the pixels are written upright" in upright


@pytest.mark.parametrize(("space", "word"), [(b"CMYK", "CMYK"), (b"GRAY", "GRAY")])
def test_an_icc_profile_that_is_not_rgb_is_dropped(img: np.ndarray, space: bytes, word: str) -> None:
    meta = read_metadata(jpeg_with_segments(encode(img, ".jpg"), (0xE2, b"ICC_PROFILE\x00\x01\x01" + fake_icc(space))))
    assert meta.icc is None and f"describes {word} data, not the RGB output" in " ".join(meta.notes)


def test_damaged_or_oversized_metadata_is_dropped_with_a_note(img: np.ndarray) -> None:
    jpeg = encode(img, ".jpg")
    cut_exif = exif_tiff(6)[:12]  # IFD0 cut short
    meta = read_metadata(jpeg_with_segments(jpeg, (0xE1, b"Exif\x00\x00" + cut_exif)))
    assert meta.exif is None and "EXIF is damaged" in " ".join(meta.notes)
    meta = read_metadata(jpeg_with_segments(jpeg, (0xE1, b"Exif\x00\x00NOT A TIFF")))
    assert meta.exif is None and "not a TIFF structure" in " ".join(meta.notes)
    half = b"ICC_PROFILE\x00\x01\x02" + fake_icc()[:300]  # segment 1 of 2, segment 2 missing
    meta = read_metadata(jpeg_with_segments(jpeg, (0xE2, half)))
    assert meta.icc is None and "incomplete" in " ".join(meta.notes)
    big = png_with_metadata(img)[:33]
    body = b"II*\x00" + struct.pack("<I", 8) + b"\x00" * 70_000
    big_png = big + struct.pack(">I", len(body)) + b"eXIf" + body + b"\x00" * 4 + encode(img, ".png")[33:]
    meta = read_metadata(big_png)
    assert meta.exif is None and "does not fit in a JPEG segment" in " ".join(meta.notes)
    assert read_metadata(encode(img, ".tiff")).notes == ("metadata of TIFF files is not copied",)
    assert read_metadata(encode(img, ".bmp")) == ImageMetadata()


# -- output safety ----------------------------------------------------------------------------------------------------


def test_output_folder_refusals(tmp_path: Path) -> None:
    photo = tmp_path / "in" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"is an existing file \(one of the inputs\)"):
        OutputGuard(photo, [photo])
    with pytest.raises(UsageError, match=r"the input folder .* is the output folder"):
        OutputGuard(tmp_path / "in", [tmp_path / "in"])
    with pytest.raises(UsageError, match="is inside the output folder"):
        OutputGuard(tmp_path, [tmp_path / "in"])
    with pytest.raises(UsageError, match="contradict"):
        OutputGuard(tmp_path / "out", [photo], overwrite=True, skip_existing=True)
    OutputGuard(tmp_path / "in" / "out", [tmp_path / "in"])  # a subfolder of an input folder is fine


def test_outputs_never_replace_inputs_nor_each_other(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.jpg", "b.png", "b.webp"):
        (src / name).write_bytes(b"x")
    listed = tmp_path / "list.txt"
    listed.write_text(str(src / "a.jpg") + "\n")
    guard = OutputGuard(src, [src / "b.png", listed], overwrite=True)
    with pytest.raises(UsageError, match="would replace an input"):
        guard.claim(InputItem(src / "a.jpg"))  # even with --overwrite
    with pytest.raises(UsageError, match="would replace an input"):
        guard.claim(InputItem(tmp_path / "elsewhere" / "a.png"))  # its output src/a.jpg is a listed input
    assert guard.claim(InputItem(src / "b.png")) == src / "b.jpg"
    with pytest.raises(UsageError, match="already the output of another input"):
        guard.claim(InputItem(src / "b.webp"))


def test_existing_outputs_need_overwrite_or_are_skipped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"old")
    item = InputItem(tmp_path / "a.png")
    with pytest.raises(UsageError, match="exists; pass --overwrite to replace it or --skip-existing"):
        OutputGuard(out, [item.path]).claim(item)
    with pytest.raises(Skip):
        OutputGuard(out, [item.path], skip_existing=True).claim(item)
    assert OutputGuard(out, [item.path], overwrite=True).claim(item) == out / "a.jpg"
    with pytest.raises(UsageError, match="exists"):
        write_output(out / "a.jpg", b"new", overwrite=False)
    assert (out / "a.jpg").read_bytes() == b"old"
    write_output(out / "a.jpg", b"new", overwrite=True)
    assert (out / "a.jpg").read_bytes() == b"new"
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg"]  # no temporary files left


def test_folder_inputs_keep_their_subpath(tmp_path: Path) -> None:
    guard = OutputGuard(tmp_path / "out", [tmp_path / "in"])
    assert guard.output_for(InputItem(tmp_path / "in" / "x" / "y.png", root=tmp_path / "in")) == (
        tmp_path / "out" / "x" / "y.jpg"
    )
    assert guard.output_for(InputItem(tmp_path / "z.tar.webp")) == tmp_path / "out" / "z.tar.jpg"


# -- the CLI ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def compress_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make sure the CLI lists `compress` (a no-op once sgjnd.cli.COMMANDS names it)."""
    if "compress" not in cli.COMMANDS:
        at = cli.COMMANDS.index("predict") + 1
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS[:at], "compress", *cli.COMMANDS[at:]))


# Untrained tiny model: S is about 0.42 at every QF, so a threshold of 0.3 makes the lowest candidate (70) the
# recommendation.
QUALITY = ["--search", "bisect", "--max-patches", "2", "--min-qf", "70", "--threshold", "0.3"]


@pytest.fixture
def inputs(img: np.ndarray, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "rotated.jpg").write_bytes(jpeg_with_exif(img, 6, icc=srgb_icc()))
    (src / "sub" / "plain.png").write_bytes(png_with_metadata(img, icc=srgb_icc()))
    (src / "sub" / "broken.jpg").write_bytes(encode(img, ".jpg")[:600])
    return src


@pytest.mark.usefixtures("compress_cli")
def test_cli_compresses_a_folder_keeping_metadata(
    inputs: Path, tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    model = ["--backend", "onnxruntime", "--model", str(tiny_onnx_dir), *QUALITY]
    code = cli.main(["compress", str(inputs), "-o", str(out), *model, "--margin", "5", "--json"])
    stdout, err = capsys.readouterr()
    assert code == 3, err  # the broken file
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["rotated.jpg", "sub", "sub/plain.jpg"]
    lines = [json.loads(line) for line in stdout.splitlines()]
    rows, total = lines[:-1], lines[-1]["total"]
    assert [Path(r["output"]).name for r in rows] == ["rotated.jpg", "plain.jpg"]
    for row in rows:
        written = Path(row["output"]).read_bytes()
        assert row["output_bytes"] == len(written)
        assert row["recommended_qf"] == 70 and row["qf"] == 75 and row["baseline_q"] == 90
        assert row["baseline_bytes"] > row["output_bytes"] and row["psnr_db"] < row["baseline_psnr_db"]
        assert row["metadata"] == (["exif", "icc"] if "rotated" in row["source"] else ["icc"])
        icc, tags, size = pil_info(written)
        assert icc == srgb_icc()
        assert size == ((96, 128) if "rotated" in row["source"] else (128, 96))  # pixels upright
        if "rotated" in row["source"]:
            assert tags[0x0112] == 1 and "EXIF orientation 6 reset to 1" in " ".join(row["notes"])
        decoded = cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.shape[:2] == size[::-1]
    assert total["images"] == 2 and total["output_bytes"] == sum(r["output_bytes"] for r in rows)
    assert "sub/broken.jpg" in err and "truncated or corrupt" in err and "2 done, 0 skipped, 1 failed" in err

    # A second run refuses to overwrite, per image; --skip-existing skips; --overwrite replaces.
    assert cli.main(["compress", str(inputs), "-o", str(out), *model]) == 1  # exit codes 2 and 3 mixed
    err = capsys.readouterr().err
    assert err.count("exists; pass --overwrite") == 2 and "0 done, 0 skipped, 3 failed" in err
    assert cli.main(["compress", str(inputs), "-o", str(out), *model, "--skip-existing"]) == 3
    assert "0 done, 2 skipped, 1 failed" in capsys.readouterr().err
    before = (out / "rotated.jpg").read_bytes()
    assert (
        cli.main(["compress", str(inputs / "rotated.jpg"), "-o", str(out), *model, "--margin", "5", "--overwrite"]) == 0
    )
    table = capsys.readouterr().out
    assert "rotated.jpg" in table and "total (1 images)" in table
    assert (out / "rotated.jpg").read_bytes() == before  # same settings, same bytes


@pytest.mark.usefixtures("compress_cli")
def test_cli_never_writes_over_an_input(
    inputs: Path, tiny_onnx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--backend", "onnxruntime", "--model", str(tiny_onnx_dir), *QUALITY]
    rotated = inputs / "rotated.jpg"
    before = rotated.read_bytes()
    assert cli.main(["compress", str(rotated), "-o", str(rotated), *model]) == 2
    assert "is an existing file (one of the inputs)" in capsys.readouterr().err
    assert cli.main(["compress", str(rotated), "-o", str(inputs), *model, "--overwrite"]) == 2
    assert "would replace an input" in capsys.readouterr().err
    assert cli.main(["compress", str(inputs), "-o", str(inputs), *model]) == 2
    assert "is the output folder" in capsys.readouterr().err
    assert rotated.read_bytes() == before
    assert sorted(p.name for p in inputs.iterdir()) == ["rotated.jpg", "sub"]


def test_outputs_get_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    write_output(tmp_path / "a.jpg", b"new", overwrite=False)
    write_output(tmp_path / "b.jpg", b"new", overwrite=True)
    with open(tmp_path / "plain", "wb"):
        pass
    want = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert want == 0o666 & ~umask
    for name in ("a.jpg", "b.jpg"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want
