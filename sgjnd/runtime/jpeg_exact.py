"""JPEG trials as an exact integer array pipeline: libjpeg-turbo's round trip, pixel for pixel, without a codec.

:func:`jpeg_roundtrip_exact` reproduces ``cv2.imdecode(cv2.imencode('.jpg', bgr, [IMWRITE_JPEG_QUALITY, q])[1])``
exactly (max difference 0) for the settings :class:`~sgjnd.runtime.jpeg.JpegCodec` writes: baseline tables of
``jpeg_set_quality(q, TRUE)``, 4:2:0, 4:2:2 or 4:4:4 sampling, islow DCTs, fancy upsampling. Huffman optimisation
and progressive coding change only the bytes, so they are accepted too. Entropy coding is lossless and is skipped.
Each detail that decides exactness follows the libjpeg-turbo source file named beside it (the reference notes
``reference/jpeg-exact.md`` list them with how much each alternative gets wrong).

It is written once against a few array operations (:class:`_Ops`), so it runs on numpy arrays (CPU) and on torch
tensors (CPU or CUDA); torch is imported only when a tensor or a ``device`` is given. The forward DCT is computed once
per call and shared by all its QFs. Both DCT passes are integer matrix products followed by libjpeg's rounding shift;
they run as float64 matrix products (BLAS / cuBLAS) with the matrices pre-scaled by the shift's power of two, which
stay exact because every product and partial sum is an integer (times that power of two) far below 2**53. The
quantisation divides integers below 2**15 by at most 2040 in float64, whose quotient never rounds across an integer.

:func:`distorted_patches_exact` is the drop-in for :meth:`JpegCodec.distorted_patches` over several QFs at once: it
uses the codec's own crop plan (:meth:`JpegCodec.plan_crops`) and runs crops of one size as a batch.

The exactness is proved by ``tests/runtime/test_jpeg_exact.py`` against the OpenCV and libjpeg-turbo versions it
pins; other libjpeg builds (plain C, other SIMD) are not covered.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from sgjnd.errors import UsageError
from sgjnd.runtime.jpeg import JpegCodec
from sgjnd.runtime.patches import PatchGrid
from sgjnd.spec import JpegSettings

Array = Any
"""A numpy array or a torch tensor (torch is optional, so it is not named in the types)."""

SAMPLING_FACTORS: dict[str, tuple[int, int]] = {"420": (2, 2), "422": (1, 2), "444": (1, 1)}
"""(vertical, horizontal) chroma subsampling factor of each supported ``JpegSettings.subsampling``."""

CPU_CHUNK_VALUES = 1 << 19
"""Plane samples × QFs decoded at once on a CPU: 4 MiB float64 temporaries stay in cache (larger chunks measured
slower, smaller ones no faster)."""

GPU_CHUNK_VALUES = 1 << 25
"""The same on a GPU, where large launches pay (a few 256 MiB temporaries)."""

# -- constants -------------------------------------------------------------------------------------------------------
_SCALEBITS = 16  # jccolor.c / jdcolor.c: 16-bit fixed point colour conversion
_ONE_HALF = 1 << (_SCALEBITS - 1)
_CBCR_OFFSET = 128 << _SCALEBITS


def _fix(x: float) -> int:
    """FIX(x) of jccolor.c / jdcolor.c: x in 16-bit fixed point, rounded."""
    return int(x * (1 << _SCALEBITS) + 0.5)


# jcparam.c: std_luminance_quant_tbl / std_chrominance_quant_tbl (natural order), the Annex K tables.
_STD_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.int64,
)
_STD_CHROMA = np.full((8, 8), 99, dtype=np.int64)
_STD_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]

# jfdctint.c / jidctint.c: CONST_BITS = 13 fixed-point constants.
_C0298, _C0390, _C0541, _C0765 = 2446, 3196, 4433, 6270
_C0899, _C1175, _C1501, _C1847 = 7373, 9633, 12299, 15137
_C1961, _C2053, _C2562, _C3072 = 16069, 16819, 20995, 25172
_CONST_BITS, _PASS1_BITS = 13, 2


def quant_tables(qf: int) -> tuple[np.ndarray, np.ndarray]:
    """The luminance and chrominance quantisation tables OpenCV writes at quality ``qf``.

    jcparam.c: ``jpeg_set_quality(cinfo, qf, TRUE)`` scales the Annex K tables by ``jpeg_quality_scaling`` and
    ``jpeg_add_quant_table`` rounds, clamps to 1..32767 and, for baseline (``force_baseline``), to 255.

    Args:
        qf: JPEG quality factor, 1..100.

    Returns:
        Two (8, 8) int64 tables in natural (row-major) order.
    """
    _check_qfs([qf])
    scale = 5000 // qf if qf < 50 else 200 - 2 * qf

    def table(basic: np.ndarray) -> np.ndarray:
        return np.clip((basic * scale + 50) // 100, 1, 255)

    return table(_STD_LUMA), table(_STD_CHROMA)


def _fdct_1d(d: Sequence[int]) -> list[int]:
    """One 8-point pass of jfdctint.c (jpeg_fdct_islow), before its DESCALE.

    Outputs 0 and 4 (a plain left shift in the C code) are returned scaled by 2**CONST_BITS, so that every output is
    then ``DESCALE(v, CONST_BITS - PASS1_BITS)`` in pass 1 (rows) and ``DESCALE(v, CONST_BITS + PASS1_BITS)`` in pass
    2 (columns); for outputs 0 and 4 that equals the C code's ``<< PASS1_BITS`` and ``DESCALE(v, PASS1_BITS)``.
    """
    tmp0, tmp7 = d[0] + d[7], d[0] - d[7]
    tmp1, tmp6 = d[1] + d[6], d[1] - d[6]
    tmp2, tmp5 = d[2] + d[5], d[2] - d[5]
    tmp3, tmp4 = d[3] + d[4], d[3] - d[4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    out = [0] * 8
    out[0] = (tmp10 + tmp11) << _CONST_BITS
    out[4] = (tmp10 - tmp11) << _CONST_BITS
    z1 = (tmp12 + tmp13) * _C0541
    out[2] = z1 + tmp13 * _C0765
    out[6] = z1 - tmp12 * _C1847
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * _C1175
    tmp4, tmp5, tmp6, tmp7 = tmp4 * _C0298, tmp5 * _C2053, tmp6 * _C3072, tmp7 * _C1501
    z1, z2, z3, z4 = -z1 * _C0899, -z2 * _C2562, -z3 * _C1961 + z5, -z4 * _C0390 + z5
    out[7], out[5], out[3], out[1] = tmp4 + z1 + z3, tmp5 + z2 + z4, tmp6 + z2 + z3, tmp7 + z1 + z4
    return out


def _idct_1d(c: Sequence[int]) -> list[int]:
    """One 8-point pass of jidctint.c (jpeg_idct_islow), before its DESCALE.

    Pass 1 (columns) descales by CONST_BITS - PASS1_BITS, pass 2 (rows) by CONST_BITS + PASS1_BITS + 3; the
    all-zero-AC shortcuts of the C code give the same values.
    """
    z1 = (c[2] + c[6]) * _C0541
    tmp2, tmp3 = z1 - c[6] * _C1847, z1 + c[2] * _C0765
    tmp0, tmp1 = (c[0] + c[4]) << _CONST_BITS, (c[0] - c[4]) << _CONST_BITS
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    tmp0, tmp1, tmp2, tmp3 = c[7], c[5], c[3], c[1]
    z1, z2, z3, z4 = tmp0 + tmp3, tmp1 + tmp2, tmp0 + tmp2, tmp1 + tmp3
    z5 = (z3 + z4) * _C1175
    tmp0, tmp1, tmp2, tmp3 = tmp0 * _C0298, tmp1 * _C2053, tmp2 * _C3072, tmp3 * _C1501
    z1, z2, z3, z4 = -z1 * _C0899, -z2 * _C2562, -z3 * _C1961 + z5, -z4 * _C0390 + z5
    tmp0, tmp1, tmp2, tmp3 = tmp0 + z1 + z3, tmp1 + z2 + z4, tmp2 + z2 + z3, tmp3 + z1 + z4
    return [
        tmp10 + tmp3, tmp11 + tmp2, tmp12 + tmp1, tmp13 + tmp0,
        tmp13 - tmp0, tmp12 - tmp1, tmp11 - tmp2, tmp10 - tmp3,
    ]  # fmt: skip


def _matrix(transform: Any) -> np.ndarray:
    """The (8, 8) integer matrix M of a linear 8-point transform: ``transform(x) == M @ x``."""
    eye = np.eye(8, dtype=np.int64).tolist()
    return np.array([transform(e) for e in eye], dtype=np.int64).T


_FDCT = _matrix(_fdct_1d)
_IDCT = _matrix(_idct_1d)


# -- the array namespace shim ------------------------------------------------------------------------------------------
class _Ops:
    """The few array operations the pipeline needs beyond operators (``+ - * / >>``, their in-place forms, ``@``,
    slicing and ``reshape``), here for numpy. Functions ending in ``_`` work in place: fresh large arrays cost page
    faults, so the hot loop reuses its temporaries."""

    def asarray(self, x: Any) -> Array:
        return np.asarray(x)

    def const(self, x: np.ndarray) -> Array:
        return np.ascontiguousarray(x)

    def to(self, x: Array, dtype: str) -> Array:
        return x.astype(dtype)

    def empty(self, shape: tuple[int, ...], dtype: str) -> Array:
        return np.empty(shape, dtype=dtype)

    def permute(self, x: Array, axes: tuple[int, ...]) -> Array:
        return x.transpose(axes)

    def take(self, x: Array, index: np.ndarray, axis: int) -> Array:
        return np.take(x, index, axis=axis)

    def stack(self, xs: Sequence[Array], axis: int) -> Array:
        return np.stack(list(xs), axis=axis)

    def sign(self, x: Array) -> Array:
        return np.sign(x)

    def floor_(self, x: Array) -> Array:
        return np.floor(x, out=x)

    def clip_(self, x: Array, lo: int, hi: int) -> Array:
        return np.clip(x, lo, hi, out=x)


class _TorchOps(_Ops):
    """The same operations on torch tensors of one device."""

    def __init__(self, device: Any) -> None:
        import torch

        self.torch = torch
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise UsageError(f"{device!r} is not a torch device; use e.g. 'cpu' or 'cuda'") from exc
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {device!r} asked for, but torch sees no CUDA device; use device='cpu' or None")

    def asarray(self, x: Any) -> Array:
        t = x if isinstance(x, self.torch.Tensor) else self.torch.from_numpy(np.ascontiguousarray(x))
        return t.to(self.device)

    def const(self, x: np.ndarray) -> Array:
        return self.torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def to(self, x: Array, dtype: str) -> Array:
        return x.to(getattr(self.torch, dtype))

    def empty(self, shape: tuple[int, ...], dtype: str) -> Array:
        return self.torch.empty(shape, dtype=getattr(self.torch, dtype), device=self.device)

    def permute(self, x: Array, axes: tuple[int, ...]) -> Array:
        return x.permute(axes)

    def take(self, x: Array, index: np.ndarray, axis: int) -> Array:
        return self.torch.index_select(x, axis % x.ndim, self.const(index.astype(np.int64)))

    def stack(self, xs: Sequence[Array], axis: int) -> Array:
        return self.torch.stack(list(xs), dim=axis)

    def sign(self, x: Array) -> Array:
        return self.torch.sign(x)

    def floor_(self, x: Array) -> Array:
        return x.floor_()

    def clip_(self, x: Array, lo: int, hi: int) -> Array:
        return x.clamp_(lo, hi)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _ops_for(x: Any, device: Any) -> _Ops:
    """numpy for a numpy array and no device; torch on ``device`` (or the tensor's own device) otherwise."""
    if device is None and not _is_tensor(x):
        return _Ops()
    try:  # torch is imported here only: the runtime never needs it otherwise
        return _TorchOps(device if device is not None else x.device)
    except ImportError as exc:
        raise UsageError(f"device={device!r} needs torch, which is not installed: pip install 'sgjnd[torch]'") from exc


# -- pipeline stages ---------------------------------------------------------------------------------------------------
def _edge_extend(x: Array, ops: _Ops, axis: int, size: int) -> Array:
    """Replicate the last row/column along ``axis`` up to ``size`` (jcsample.c expand_right_edge, jcprepct.c
    expand_bottom_edge)."""
    n = x.shape[axis]
    return x if n == size else ops.take(x, np.minimum(np.arange(size), n - 1), axis)


def _ycc_from_bgr(bgr: Array) -> tuple[Array, Array, Array]:
    """jccolor.c rgb_ycc_convert: 16-bit fixed point; chroma rounds with ONE_HALF - 1. int32 in, int32 out."""
    b, g, r = bgr[..., 0], bgr[..., 1], bgr[..., 2]
    y = (_fix(0.29900) * r + _fix(0.58700) * g + _fix(0.11400) * b + _ONE_HALF) >> _SCALEBITS
    cb = (-_fix(0.16874) * r - _fix(0.33126) * g + _fix(0.5) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> _SCALEBITS
    cr = (_fix(0.5) * r - _fix(0.41869) * g - _fix(0.08131) * b + _CBCR_OFFSET + _ONE_HALF - 1) >> _SCALEBITS
    return y, cb, cr


def _bgr_from_ycc_(y: Array, cb: Array, cr: Array, out: Array, ops: _Ops) -> None:
    """jdcolor.c ycc_rgb_convert (its Cr_r/Cb_b/Cr_g/Cb_g tables) and the range limit, into ``out`` (…, 3) uint8.
    ``cb`` and ``cr`` are int32 temporaries and are overwritten."""
    cb -= 128
    cr -= 128
    g = -_fix(0.34414) * cb
    g -= _fix(0.71414) * cr
    g += _ONE_HALF
    g >>= _SCALEBITS
    cb *= _fix(1.77200)
    cb += _ONE_HALF
    cb >>= _SCALEBITS
    cr *= _fix(1.40200)
    cr += _ONE_HALF
    cr >>= _SCALEBITS
    for channel, value in enumerate((cb, g, cr)):
        value += y
        out[..., channel] = ops.clip_(value, 0, 255)


def _downsample(x: Array, ops: _Ops, fv: int, fh: int) -> Array:
    """jcsample.c h2v2_downsample (bias 1,2,1,2… per output column, >> 2) and h2v1_downsample (bias 0,1,…, >> 1)."""
    if fh == 1:
        return x
    width = x.shape[-1] // 2
    if fv == 2:
        total = x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]
        return (total + ops.const(np.arange(width, dtype=np.int32) % 2 + 1)) >> 2
    return (x[..., 0::2] + x[..., 1::2] + ops.const(np.arange(width, dtype=np.int32) % 2)) >> 1


def _upsample(c: Array, ops: _Ops, fv: int, fh: int) -> Array:
    """jdsample.c: fancy (triangle) upsampling, h2v2 with +8/+7 and h2v1 with +1/+2 rounding on even/odd output
    columns; box upsampling when the chroma is at most 2 samples wide (its ``downsampled_width > 2`` test).

    ``c`` holds the real chroma samples only: the neighbours beyond them repeat the last real row/column (jdmainct.c
    set_bottom_pointers / make_funny_pointers, and the first/last column cases of jdsample.c). Returns int32.
    """
    if fh == 1:
        return ops.to(c, "int32")
    h, w = c.shape[-2:]
    if w <= 2:  # h2v2_upsample / h2v1_upsample: replicate each sample
        out = ops.take(ops.to(c, "int32"), np.arange(2 * w) // 2, -1)
        return ops.take(out, np.arange(2 * h) // 2, -2) if fv == 2 else out
    index = np.concatenate([[0], np.arange(w), [w - 1]])  # one replicated column each side
    p = ops.take(ops.to(c, "int32"), index, -1)
    out = ops.empty((*c.shape[:-2], fv * h, 2 * w), "int32")
    if fv == 2:
        p = ops.take(p, np.concatenate([[0], np.arange(h), [h - 1]]), -2)
        centre = 3 * p[..., 1:-1, :]
        for v, rows in ((0, p[..., :-2, :]), (1, p[..., 2:, :])):  # row above / below: 3·nearest + next nearest
            col = centre + rows
            mid = 3 * col[..., 1:-1]
            out[..., v::2, 0::2] = (mid + col[..., :-2] + 8) >> 4
            out[..., v::2, 1::2] = (mid + col[..., 2:] + 7) >> 4
    else:
        mid = 3 * p[..., 1:-1]
        out[..., 0::2] = (mid + p[..., :-2] + 1) >> 2
        out[..., 1::2] = (mid + p[..., 2:] + 2) >> 2
    return out


def _to_blocks(plane: Array, ops: _Ops) -> Array:
    """(B, Hp, Wp) -> (8, 8, R): sample (y, x) of each 8×8 block first, so both DCT passes are left products."""
    b, hp, wp = plane.shape
    return ops.permute(plane.reshape(b, hp // 8, 8, wp // 8, 8), (2, 4, 0, 1, 3)).reshape(8, 8, -1)


def _from_blocks(blocks: Array, ops: _Ops, shape: tuple[int, int, int]) -> Array:
    """(Q, 8, 8, R) -> (B, Q, Hp, Wp), the inverse of :func:`_to_blocks` with a QF axis."""
    b, hp, wp = shape
    x = blocks.reshape(-1, 8, 8, b, hp // 8, wp // 8)
    return ops.permute(x, (3, 0, 4, 1, 5, 2)).reshape(b, -1, hp, wp)


def _fdct(plane: Array, ops: _Ops, fdct: Sequence[Array]) -> Array:
    """jcdctmgr.c convsamp (minus CENTERJSAMPLE) + jfdctint.c: rows, then columns, each pass a product with the
    pass's matrix pre-scaled by 2**-shift (exact) and DESCALE's rounding as ``floor(v + 1/2)``.

    (B, Hp, Wp) int32 with Hp, Wp multiples of 8 -> (8, 8, R) float64 coefficients (v, u, block), scaled by 8."""
    x = ops.to(_to_blocks(plane, ops), "float64")
    x -= 128.0
    x = fdct[0] @ x  # rows: (8x) -> (8u) for each y
    x += 0.5
    x = fdct[1] @ ops.floor_(x).reshape(8, -1)  # columns: (8y) -> (8v)
    x += 0.5
    return ops.floor_(x).reshape(8, 8, -1)


def _quantize_idct(coef: tuple[Array, Array], tables: Array, ops: _Ops, idct: Sequence[Array]) -> Array:
    """Quantise, dequantise and inverse-transform one plane at several QFs.

    jcdctmgr.c quantize: ``sign(c)·((|c| + 4q) // 8q)`` (libjpeg-turbo's reciprocal multiply gives the same);
    jddctmgr.c/jidctint.c: times q, columns then rows, ``+ CENTERJSAMPLE`` and the range limit.

    Args:
        coef: ``(|c|, sign(c))`` of the (8, 8, R) float64 coefficients c from :func:`_fdct`.
        tables: (Q, 8, 8, 1) float64 quantisation tables.

    Returns:
        (Q, 8, 8, R) uint8 decoded samples (y, x, block).
    """
    magnitude, sign = coef
    x = magnitude + 4.0 * tables
    x /= 8.0 * tables
    ops.floor_(x)
    x *= tables
    x *= sign
    x = idct[0] @ x.reshape(x.shape[0], 8, -1)  # columns: (8v) -> (8y) for each u
    x += 0.5
    x = idct[1] @ ops.floor_(x).reshape(x.shape[0], 8, 8, -1)  # rows: (8u) -> (8x) for each y
    x += 128.5
    # The range limit: a clamp, as libjpeg-turbo's SIMD IDCT does (plain C's range_limit table wraps beyond ±512).
    return ops.to(ops.clip_(ops.floor_(x), 0, 255), "uint8")


def _encode(bgr: Array, fv: int, fh: int, ops: _Ops) -> list[tuple[Array, Array]]:
    """The QF-independent half: (B, H, W, 3) uint8 -> ``(|c|, sign(c))`` of the Y, Cb, Cr DCT coefficients c, each
    (8, 8, R) float64."""
    _, height, width, _ = bgr.shape
    hp, wp = _padded(height, width, fv, fh)
    hc = -(-height // fv)  # real chroma rows (downsampled_height)
    y, cb, cr = _ycc_from_bgr(ops.to(bgr, "int32"))
    # Luma: edge replication to whole blocks (jcsample.c fullsize_downsample, jcprepct.c); the extra blocks of a
    # partial MCU are never shown, so padding to the MCU is as good.
    planes = [_edge_extend(_edge_extend(y, ops, -2, hp), ops, -1, wp)]
    for chroma in (cb, cr):
        # Right edge: full-resolution columns replicated to the MCU width before downsampling (jcsample.c); bottom:
        # an odd last row duplicated (jcprepct.c, the row group), then the downsampled rows replicated.
        full = _edge_extend(_edge_extend(chroma, ops, -1, wp), ops, -2, hc * fv)
        planes.append(_edge_extend(_downsample(full, ops, fv, fh), ops, -2, hp // fv))
    fdct = [ops.const(_FDCT / (1 << n)) for n in (_CONST_BITS - _PASS1_BITS, _CONST_BITS + _PASS1_BITS)]
    coefs = [_fdct(p, ops, fdct) for p in planes]
    return [(abs(c), ops.sign(c)) for c in coefs]


def _decode_(coefs: list[tuple[Array, Array]], qfs: Sequence[int], fv: int, fh: int, ops: _Ops, out: Array) -> None:
    """The per-QF half: quantise, decode and colour-convert the coefficients of :func:`_encode` into ``out``, a
    (B, Q, H, W, 3) uint8 array."""
    b, _, height, width, _ = out.shape
    hp, wp = _padded(height, width, fv, fh)
    hc, wc = -(-height // fv), -(-width // fh)  # real chroma samples (downsampled_height/width)
    idct = [ops.const(_IDCT / (1 << n)) for n in (_CONST_BITS - _PASS1_BITS, _CONST_BITS + _PASS1_BITS + 3)]
    luma_t, chroma_t = zip(*(quant_tables(qf) for qf in qfs), strict=True)
    tables = [ops.const(np.stack(t).astype(np.float64)[..., None]) for t in (luma_t, chroma_t, chroma_t)]
    shapes = [(b, hp, wp), (b, hp // fv, wp // fh), (b, hp // fv, wp // fh)]
    decoded = [
        _from_blocks(_quantize_idct(c, t, ops, idct), ops, shape)
        for c, t, shape in zip(coefs, tables, shapes, strict=True)
    ]
    cb_out, cr_out = (_upsample(d[..., :hc, :wc], ops, fv, fh)[..., :height, :width] for d in decoded[1:])
    _bgr_from_ycc_(decoded[0][..., :height, :width], cb_out, cr_out, out, ops)


def _padded(height: int, width: int, fv: int, fh: int) -> tuple[int, int]:
    """The image size rounded up to whole MCUs (8·fv × 8·fh pixels)."""
    return -(-height // (8 * fv)) * 8 * fv, -(-width // (8 * fh)) * 8 * fh


# -- public API --------------------------------------------------------------------------------------------------------
def check_exact_settings(settings: JpegSettings) -> tuple[int, int]:
    """Check that the exact pipeline reproduces these codec settings; return the chroma (vertical, horizontal) factors.

    The settings the pipeline reproduces are those :class:`~sgjnd.runtime.jpeg.JpegCodec` accepts (one check, there).

    Raises:
        UsageError: another encoder than OpenCV's libjpeg, or a subsampling the codec does not write.
    """
    JpegCodec(settings)
    return SAMPLING_FACTORS[settings.subsampling]


def jpeg_roundtrip_exact(
    images_bgr: Array,
    qfs: Sequence[int],
    *,
    settings: JpegSettings | None = None,
    device: Any = None,
    max_chunk_values: int | None = None,
) -> Array:
    """Encode and decode a batch of images at several QFs exactly as OpenCV's libjpeg-turbo does.

    Equals ``cv2.imdecode(cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, qf, ...])[1], cv2.IMREAD_COLOR)``
    pixel for pixel, with the sampling of ``settings``. The forward DCT is shared by all QFs of the call.

    Args:
        images_bgr: (B, H, W, 3) uint8 BGR images of one size, a numpy array or a torch tensor.
        qfs: JPEG quality factors, each 1..100.
        settings: the codec settings (default: ``JpegSettings()``, 4:2:0).
        device: None runs numpy for a numpy array (torch on its own device for a tensor); a torch device
            (``"cpu"``, ``"cuda"``) runs torch there.
        max_chunk_values: plane samples × QFs decoded at once; bounds the working memory. None:
            :data:`CPU_CHUNK_VALUES` or, on CUDA, :data:`GPU_CHUNK_VALUES`.

    Returns:
        (B, len(qfs), H, W, 3) uint8, a numpy array or a torch tensor on the device used.

    Raises:
        UsageError: bad images, QFs, settings, or a device without torch.
    """
    fv, fh = check_exact_settings(settings if settings is not None else JpegSettings())
    qfs = _check_qfs(qfs)
    _check_batch(images_bgr)
    ops = _ops_for(images_bgr, device)
    images = ops.asarray(images_bgr)
    max_chunk_values = _chunk_values(images, max_chunk_values)
    n, height, width, _ = images.shape
    n_chunk = max(1, min(n, int(max_chunk_values // _coefficients(height, width, fv, fh))))
    out = ops.empty((n, len(qfs), height, width, 3), "uint8")
    for i in range(0, n, n_chunk):
        coefs = _encode(images[i : i + n_chunk], fv, fh, ops)  # shared by all QFs
        _decode_in_chunks(coefs, qfs, fv, fh, ops, out[i : i + n_chunk], max_chunk_values)
    return out


def _coefficients(height: int, width: int, fv: int, fh: int) -> float:
    """DCT coefficients of one (height, width) image at one QF: the padded luma plane and two chroma planes."""
    hp, wp = _padded(height, width, fv, fh)
    return hp * wp * (1 + 2 / (fv * fh))


def _chunk_values(images: Array, max_chunk_values: int | None) -> int:
    """``max_chunk_values``, or its default for where ``images`` are (:data:`GPU_CHUNK_VALUES` on CUDA)."""
    if max_chunk_values is None:
        cuda = str(getattr(images, "device", "cpu")).startswith("cuda")
        return GPU_CHUNK_VALUES if cuda else CPU_CHUNK_VALUES
    if int(max_chunk_values) < 1:
        raise UsageError(f"max_chunk_values must be >= 1, got {max_chunk_values!r}")
    return int(max_chunk_values)


def _decode_in_chunks(
    coefs: list[tuple[Array, Array]], qfs: Sequence[int], fv: int, fh: int, ops: _Ops, out: Array, max_values: int
) -> None:
    """:func:`_decode_` of every QF into ``out`` (B, Q, H, W, 3), a few QFs at a time so that about ``max_values``
    coefficients are decoded at once."""
    n, _, height, width, _ = out.shape
    q_chunk = max(1, int(max_values // (_coefficients(height, width, fv, fh) * n)))
    for j in range(0, len(qfs), q_chunk):
        _decode_(coefs, qfs[j : j + q_chunk], fv, fh, ops, out[:, j : j + q_chunk])


def distorted_patches_exact(
    codec: JpegCodec | JpegSettings,
    image_bgr: Array,
    grid: PatchGrid,
    qfs: Sequence[int],
    *,
    margin: int = 16,
    device: Any = None,
    max_chunk_values: int | None = None,
) -> Array:
    """The grid's patches after a JPEG round trip at each QF: ``JpegCodec.distorted_patches`` for many QFs at once,
    ``out[k] == codec.distorted_patches(image_bgr, grid, qfs[k], margin=margin)``.

    Args:
        codec: the codec, or its settings.
        image_bgr: (H, W, 3) uint8 BGR image with the grid's ``image_shape`` (numpy array or torch tensor).
        grid: the patches.
        qfs: JPEG quality factors, each 1..100.
        margin: context pixels around each patch (>= 1), as for :meth:`JpegCodec.plan_crops`.
        device: as for :func:`jpeg_roundtrip_exact`.
        max_chunk_values: as for :func:`jpeg_roundtrip_exact`.

    Returns:
        (len(qfs), N, s, s, 3) uint8 distorted patches in the grid's order (numpy, or torch on the device used).

    Raises:
        UsageError: bad settings, QFs, margin, or an image that does not match the grid.
    """
    qfs = _check_qfs(qfs)
    rounds = distorted_patch_rounds(
        codec, image_bgr, grid, qfs, per_round=len(qfs), margin=margin, device=device,
        max_chunk_values=max_chunk_values,
    )  # fmt: skip
    return next(rounds)


def distorted_patch_rounds(
    codec: JpegCodec | JpegSettings,
    image_bgr: Array,
    grid: PatchGrid,
    qfs: Sequence[int],
    *,
    per_round: int,
    margin: int = 16,
    device: Any = None,
    max_chunk_values: int | None = None,
) -> Iterator[Array]:
    """:func:`distorted_patches_exact` in rounds of at most ``per_round`` QFs, in ``qfs`` order.

    Uses the codec's crop plan (:meth:`JpegCodec.plan_crops`, or one whole-image crop where the plan prefers it).
    Each crop is coded once, before the first round: the crops of one size are one batch, and its forward DCT serves
    every round; a round holds only its own QFs' patches.

    Yields:
        (len(round), N, s, s, 3) uint8 distorted patches in the grid's order.

    Raises:
        UsageError: as :func:`distorted_patches_exact`, or ``per_round`` below 1.
    """
    codec = codec if isinstance(codec, JpegCodec) else JpegCodec(codec)
    fv, fh = check_exact_settings(codec.settings)
    qfs = _check_qfs(qfs)
    if isinstance(per_round, bool) or not isinstance(per_round, int) or per_round < 1:
        raise UsageError(f"per_round must be a whole number of QFs >= 1, got {per_round!r}")
    if getattr(image_bgr, "ndim", None) != 3 or tuple(image_bgr.shape[:2]) != tuple(grid.image_shape):
        raise UsageError(
            f"expected an (H, W, 3) image of the grid's size {tuple(grid.image_shape)}, got shape "
            f"{tuple(getattr(image_bgr, 'shape', ()))}; make the grid from this image's shape"
        )
    plan = codec.plan_crops(grid, margin=margin)
    crops, patch_crop = plan.crops, plan.patch_crop
    if plan.prefer_full_image:  # as JpegCodec's "auto": identical pixels, fewer coded
        crops = np.array([[0, 0, *grid.image_shape]], dtype=np.int64)
        patch_crop = np.zeros(len(grid), dtype=np.int64)
    ops = _ops_for(image_bgr, device)
    image = ops.asarray(image_bgr)
    max_values = _chunk_values(image, max_chunk_values)
    s = grid.patch_size
    sizes = crops[:, 2:] - crops[:, :2]
    groups = []  # (crop indices, their coefficients, crop height, crop width), one per crop size
    for size in np.unique(sizes, axis=0):
        members = np.flatnonzero((sizes == size).all(axis=1))
        batch = ops.stack([image[y0:y1, x0:x1] for y0, x0, y1, x1 in crops[members].tolist()], axis=0)
        groups.append((members, _encode(batch, fv, fh, ops), int(size[0]), int(size[1])))
    for start in range(0, len(qfs), per_round):
        round_qfs = qfs[start : start + per_round]
        out = ops.empty((len(round_qfs), len(grid), s, s, 3), "uint8")
        for members, coefs, height, width in groups:
            decoded = ops.empty((len(members), len(round_qfs), height, width, 3), "uint8")
            _decode_in_chunks(coefs, round_qfs, fv, fh, ops, decoded, max_values)
            for k, m in enumerate(members.tolist()):
                cy, cx = crops[m, :2].tolist()
                for p in np.flatnonzero(patch_crop == m).tolist():
                    py, px = (grid.coords[p] - (cy, cx)).tolist()
                    out[:, p] = decoded[k, :, py : py + s, px : px + s]
        yield out


# -- input checks ------------------------------------------------------------------------------------------------------
def _check_qfs(qfs: Sequence[int]) -> list[int]:
    if isinstance(qfs, int | np.integer) or not isinstance(qfs, Sequence | np.ndarray):
        raise UsageError(f"qfs must be a sequence of quality factors, e.g. [{qfs!r}], got {type(qfs).__name__}")
    out = []
    for qf in qfs:
        if isinstance(qf, bool) or not isinstance(qf, int | np.integer) or not 1 <= int(qf) <= 100:
            raise UsageError(f"JPEG quality factors must be integers in 1..100, got {qf!r}")
        out.append(int(qf))
    if not out:
        raise UsageError("qfs is empty: give at least one JPEG quality factor")
    return out


def _check_batch(images: Any) -> None:
    shape = tuple(getattr(images, "shape", ()))
    dtype = str(getattr(images, "dtype", type(images).__name__))
    if not (isinstance(images, np.ndarray) or _is_tensor(images)) or len(shape) != 4 or shape[3] != 3:
        raise UsageError(
            f"expected a (B, H, W, 3) uint8 BGR batch (numpy array or torch tensor), got shape {shape}, "
            f"dtype {dtype}; stack single images with images[None]"
        )
    if dtype not in ("uint8", "torch.uint8"):
        raise UsageError(f"expected uint8 BGR images, got dtype {dtype}")
    if 0 in shape:
        raise UsageError(f"expected non-empty images, got shape {shape}")
