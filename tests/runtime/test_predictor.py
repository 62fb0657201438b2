"""JNDPredictor itself: search strategies, the JND rule, batching, padding, the patch cap, failures and config.

Two kinds of model:

- A fake model with a known S(QF): its distorted "patches" carry their QF (``MarkedPairs``), the fake encoder passes
  it on as a feature and the fake head scores each pair with a chosen curve ``S(QF)``, so the predictor's S is that
  curve exactly and the expected JND follows from the documented rule by hand.
- The untrained tiny model on ONNX Runtime, on a bundled photo: real patches, real JPEG, real batching.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import cv2
import numpy as np
import pytest

from sgjnd.errors import BackendError, UsageError
from sgjnd.runtime.backends.base import ModelBackends, Runner
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.decode import DecodedImage, decode_image
from sgjnd.runtime.pairs import GriddedImage, PairMaker
from sgjnd.runtime.predictor import JNDPredictor, JNDResult, PredictConfig
from sgjnd.runtime.search import SearchConfig, jnd_from_curve
from sgjnd.spec import ModelSpec

SPEC = ModelSpec(name="sgjnd_tiny", patch_size=64, feature_dim=128)
Curve = Callable[[np.ndarray], np.ndarray]
"""S as a function of QF (vectorised)."""


# -- a fake model with a known S(QF) -----------------------------------------------------------------------------------
class MarkedPairs(PairMaker):
    """Distorted patches filled with their QF, so that the fake encoder can tell which QF it sees."""

    def distorted(self, image: GriddedImage, qf: int) -> np.ndarray:
        s = self.spec.patch_size
        return np.full((len(image), 3, s, s), float(qf), np.float32)


class QFEncoder:
    """features[:, 0] = the patch mean (the QF for marked patches); the rest zero."""

    max_batch_size = 64
    preferred_batch_size = 16
    description = "fake encoder"

    def __init__(self) -> None:
        self.calls = 0

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        patches = feeds["patches"]
        features = np.zeros((len(patches), SPEC.feature_dim), np.float32)
        features[:, 0] = patches.mean(axis=(1, 2, 3))
        return {"features": features}


class CurveHead:
    """q = S(QF of the distorted patch), w = 1: the image's S(QF) is the curve itself."""

    max_batch_size = 256
    preferred_batch_size = 256
    description = "fake head"

    def __init__(self, curve: Curve) -> None:
        self.curve = curve

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        qf = np.rint(feeds["f_dis"][:, 0])
        return {"q": self.curve(qf).astype(np.float32), "w": np.ones(len(qf), np.float32)}


def fake_predictor(curve: Curve, **config: object) -> JNDPredictor:
    search = {k: config.pop(k) for k in ("strategy", "qfs", "window", "threshold") if k in config}
    models = ModelBackends(SPEC, QFEncoder(), CurveHead(curve), weights="fake")
    predictor = JNDPredictor(models, PredictConfig(search=SearchConfig(**search), max_patches=4, **config))  # type: ignore[arg-type]
    predictor.pairs = MarkedPairs(SPEC, margin=predictor.config.jpeg_margin)
    return predictor


@pytest.fixture(scope="module")
def image() -> DecodedImage:
    """A 200x136 smooth synthetic image (6 patch cells): the fake model never looks at its pixels."""
    rng = np.random.default_rng(0)
    bgr = cv2.resize(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), (200, 136))
    return decode_image(cv2.imencode(".png", bgr)[1].tobytes())


def step(at: int, low: float = 0.2, high: float = 0.8) -> Curve:
    """Visible (S = low) below QF ``at``, invisible (S = high) from it on."""
    return lambda qf: np.where(qf >= at, high, low)


def logistic(centre: float) -> Curve:
    """A smooth S rising through 0.5 between QF ``centre - 0.5`` and ``centre + 0.5``."""
    return lambda qf: 1.0 / (1.0 + np.exp(-(qf - centre + 0.5) / 4.0))


@pytest.mark.parametrize("window", [1, 5])
@pytest.mark.parametrize("shape", ["step", "logistic"])
@pytest.mark.parametrize("crossing", [1, 2, 37, 64, 99, 100, 101])
def test_strategies_agree_with_full_on_a_monotone_curve(
    image: DecodedImage, crossing: int, shape: str, window: int
) -> None:
    """S rises with QF and first reaches the threshold at ``crossing``: by the rule, the JND is the QF below it and
    the recommended QF is ``crossing`` (none when every QF is visible, no JND when none is)."""
    curve = step(crossing) if shape == "step" else logistic(crossing)
    expected = (crossing - 1 if crossing > 1 else None, crossing if crossing <= 100 else None)
    results: dict[str, JNDResult] = {}
    for strategy in ("full", "coarse-to-fine", "bisect"):
        result = fake_predictor(curve, strategy=strategy, window=window).predict(image)
        assert (result.jnd_qf, result.recommended_qf) == expected, strategy
        qfs = np.array(list(result.scores))
        np.testing.assert_allclose(list(result.scores.values()), curve(qfs), rtol=0, atol=1e-6)  # S is the curve
        assert result.encoder_passes == 4 * (1 + len(result.scores))  # the reference pass, then each QF once
        results[strategy] = result
    assert list(results["full"].scores) == list(range(1, 101))
    for strategy in ("coarse-to-fine", "bisect"):
        assert len(results[strategy].scores) < 40, (strategy, len(results[strategy].scores))
        assert results[strategy].encoder_passes < results["full"].encoder_passes


@pytest.mark.parametrize(
    ("curve", "config", "expected"),
    [
        # S >= threshold is invisible: S(50) = 0.5 is invisible at threshold 0.5, visible at 0.505.
        (lambda qf: qf / 100, {"threshold": 0.5}, (49, 50)),
        (lambda qf: qf / 100, {"threshold": 0.505}, (50, 51)),
        # A 1-QF and a 2-QF visible dip above the crossing (QF 40): the window of 5 votes them away, window 1 not.
        (lambda qf: np.where((qf >= 40) & (qf != 70), 0.9, 0.1), {"window": 1}, (70, 71)),
        (lambda qf: np.where((qf >= 40) & (qf != 70), 0.9, 0.1), {"window": 5}, (39, 40)),
        (lambda qf: np.where((qf >= 40) & ~np.isin(qf, (70, 71)), 0.9, 0.1), {"window": 5}, (39, 40)),
        # A 3-QF dip is a majority of 5 at its centre: it stays, and the JND is its top.
        (lambda qf: np.where((qf >= 40) & ~np.isin(qf, (70, 71, 72)), 0.9, 0.1), {"window": 5}, (72, 73)),
        # A window of 7 votes the 3-QF dip away.
        (lambda qf: np.where((qf >= 40) & ~np.isin(qf, (70, 71, 72)), 0.9, 0.1), {"window": 7}, (39, 40)),
        # An isolated invisible QF below the crossing (a one-off high S at QF 20) is voted away too.
        (lambda qf: np.where((qf >= 60) | (qf == 20), 0.9, 0.1), {"window": 1}, (59, 60)),
        # Candidates other than 1..100: the JND and the recommendation are candidates.
        (step(50), {"qfs": (20, 40, 60, 80, 100)}, (40, 60)),
        (step(50), {"qfs": (20, 40, 60, 80, 100), "strategy": "bisect"}, (40, 60)),
        (step(50), {"qfs": (20, 40, 60, 80, 100), "strategy": "coarse-to-fine"}, (40, 60)),
    ],
)
def test_jnd_follows_the_threshold_and_window_rule(
    image: DecodedImage, curve: Curve, config: dict[str, object], expected: tuple[int, int]
) -> None:
    result = fake_predictor(curve, **config).predict(image)
    assert (result.jnd_qf, result.recommended_qf) == expected
    if result.strategy == "full":  # the reported scores give the same answer by the search module's own rule
        search = SearchConfig(**{k: v for k, v in config.items() if k != "strategy"})  # type: ignore[arg-type]
        qfs, scores = list(result.scores), list(result.scores.values())
        assert jnd_from_curve(qfs, scores, search.window, search.threshold) == expected


def test_every_qf_invisible_or_every_qf_visible(image: DecodedImage) -> None:
    invisible = fake_predictor(lambda qf: np.full(qf.shape, 0.9)).predict(image)
    assert invisible.jnd_qf is None and invisible.recommended_qf == 1
    assert invisible.jpeg_bytes is not None and invisible.jpeg_bytes > 0 and invisible.psnr_db is not None
    assert all(p.q == pytest.approx(0.9) for p in invisible.patches)  # the patches are reported at QF 1
    visible = fake_predictor(lambda qf: np.full(qf.shape, 0.1)).predict(image)
    assert visible.jnd_qf == 100 and visible.recommended_qf is None
    assert visible.jpeg_bytes is None and visible.psnr_db is None  # nothing to compress to
    assert all(p.q == pytest.approx(0.1) for p in visible.patches)  # reported at the JND instead
    assert visible.to_dict()["psnr_db"] is None


# -- the tiny model on a real photo ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tiny_onnx_dir: Path) -> ModelBackends:
    models = open_model("onnxruntime", tiny_onnx_dir, threads=1)
    with models:
        yield models  # type: ignore[misc]


@pytest.fixture(scope="module")
def photo(photos: list[Path]) -> DecodedImage:
    return decode_image(photos[1])  # chelsea.png, 451x300: 28 patch cells


EVERY_5TH = SearchConfig(strategy="full", qfs=tuple(range(5, 101, 5)))


def test_scores_do_not_depend_on_batch_size_or_padding(tiny_models: ModelBackends, photo: DecodedImage) -> None:
    """5 patches x 20 QFs: batches of 1, 3 (short last batch, batches straddling QFs), the preferred 16, and each
    last batch padded to full size all give S equal to 1e-6 (the encoder is batch-independent on ORT CPU)."""
    runs = {
        (size, pad): JNDPredictor(
            tiny_models, PredictConfig(search=EVERY_5TH, max_patches=5, batch_size=size, pad_last_batch=pad)
        ).predict(photo)
        for size in (1, 3, None)
        for pad in (False, True)
    }
    base = runs[(None, False)]
    assert len(base.scores) == 20 and base.encoder_passes == 5 * 21
    for key, result in runs.items():
        assert list(result.scores) == list(base.scores), key
        np.testing.assert_allclose(list(result.scores.values()), list(base.scores.values()), rtol=0, atol=1e-6)
        assert result.encoder_passes == base.encoder_passes  # padding rows are not counted as passes
        for p, b in zip(result.patches, base.patches, strict=True):
            assert (
                (p.y, p.x) == (b.y, b.x) and p.q == pytest.approx(b.q, abs=1e-6) and p.w == pytest.approx(b.w, abs=1e-6)
            )


def test_s_is_the_weighted_mean_of_the_reported_patches(tiny_models: ModelBackends, photo: DecodedImage) -> None:
    """S = Σw·q/Σw over the patches; the patches are reported at the recommended QF (threshold 0.01: QF 5)."""
    config = PredictConfig(search=SearchConfig(qfs=EVERY_5TH.qfs, threshold=0.01), max_patches=7)
    result = JNDPredictor(tiny_models, config).predict(photo)
    assert result.jnd_qf is None and result.recommended_qf == 5
    q = np.array([p.q for p in result.patches])
    w = np.array([p.w for p in result.patches])
    assert len(q) == 7 and np.all(w > 0) and np.ptp(q) > 0  # real, varying per-patch outputs
    assert result.scores[5] == pytest.approx(float(np.sum(w * q) / np.sum(w)), rel=1e-6)


@pytest.mark.parametrize(("cap", "expected"), [(1, 1), (3, 3), (28, 28), (1000, 28), (None, 28)])
def test_max_patches_caps_the_patches(
    tiny_models: ModelBackends, photo: DecodedImage, cap: int | None, expected: int
) -> None:
    config = PredictConfig(search=SearchConfig(qfs=(30, 60, 90)), max_patches=cap)
    result = JNDPredictor(tiny_models, config).predict(photo)
    assert len(result.patches) == expected  # 451x300 has 7x4 = 28 cells of 64 px
    assert result.encoder_passes == expected * (1 + len(result.scores))
    corners = {(p.y, p.x) for p in result.patches}
    assert len(corners) == expected
    assert all(y % 64 == 0 and x % 64 == 0 and y + 64 <= 300 and x + 64 <= 451 for y, x in corners)


def small_image(photo: DecodedImage, width: int, height: int) -> bytes:
    return bytes(cv2.imencode(".png", np.ascontiguousarray(photo.bgr[100 : 100 + height, 100 : 100 + width]))[1])


@pytest.mark.parametrize(("width", "height"), [(40, 30), (16, 16), (64, 20), (300, 17)])  # 16: the decoder's least
def test_images_smaller_than_a_patch_are_padded_and_predicted(
    tiny_models: ModelBackends, photo: DecodedImage, width: int, height: int
) -> None:
    config = PredictConfig(search=SearchConfig(qfs=EVERY_5TH.qfs, threshold=0.01))
    result = JNDPredictor(tiny_models, config).predict(small_image(photo, width, height))
    assert (result.width, result.height) == (width, height)  # the image's own size, not the padded one
    assert any("smaller than the 64px patch" in note and "edge replication" in note for note in result.notes)
    assert len(result.patches) == max(1, width // 64)
    assert all(p.y == 0 for p in result.patches)
    assert len(result.scores) == 20 and all(math.isfinite(s) for s in result.scores.values())
    assert result.recommended_qf == 5 and result.jpeg_bytes is not None and result.jpeg_bytes > 0


def test_the_jpeg_size_of_a_small_image_is_that_of_the_image(tiny_models: ModelBackends, photo: DecodedImage) -> None:
    data = small_image(photo, 40, 30)
    predictor = JNDPredictor(tiny_models, PredictConfig(search=SearchConfig(qfs=EVERY_5TH.qfs, threshold=0.01)))
    result = predictor.predict(data)
    assert result.recommended_qf is not None
    original = decode_image(data).bgr
    assert result.jpeg_bytes == len(predictor.codec.encode(original, result.recommended_qf))


# -- failures --------------------------------------------------------------------------------------------------------
class FailingRunner:
    """Wraps a runner and raises on call number ``fail_at`` (once)."""

    def __init__(self, inner: Runner, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.max_batch_size, self.preferred_batch_size = inner.max_batch_size, inner.preferred_batch_size
        self.description = inner.description

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise BackendError("simulated device failure in the encoder")
        return self.inner.infer(feeds)


def test_a_runner_failing_mid_image_raises_and_the_predictor_stays_usable(
    tiny_models: ModelBackends, photo: DecodedImage
) -> None:
    config = PredictConfig(search=SearchConfig(strategy="coarse-to-fine"), max_patches=6, batch_size=4)
    baseline = JNDPredictor(tiny_models, config).predict(photo)
    encoder = FailingRunner(tiny_models.encoder, fail_at=5)  # past the reference pass (2 calls), inside a round
    predictor = JNDPredictor(ModelBackends(tiny_models.model, encoder, tiny_models.head, tiny_models.weights), config)
    with pytest.raises(BackendError, match="simulated device failure in the encoder"):
        predictor.predict(photo)
    assert encoder.calls == 5
    again = predictor.predict(photo)  # the same predictor, the next image (here: the same one again)
    assert again.scores == baseline.scores and again.patches == baseline.patches
    assert (again.jnd_qf, again.recommended_qf) == (baseline.jnd_qf, baseline.recommended_qf)
    assert again.encoder_passes == baseline.encoder_passes  # nothing left over from the failed image


def test_a_runner_returning_too_few_rows_is_an_error_not_a_result(
    tiny_models: ModelBackends, photo: DecodedImage
) -> None:
    class Short(FailingRunner):
        def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: v[:-1] for k, v in self.inner.infer(feeds).items()}

    models = ModelBackends(tiny_models.model, Short(tiny_models.encoder, 0), tiny_models.head)
    with pytest.raises(UsageError, match=r"reference and \d+ distorted features"):
        JNDPredictor(models, PredictConfig(search=EVERY_5TH, max_patches=4)).predict(photo)


def test_a_nan_score_is_refused(image: DecodedImage) -> None:
    """NaN >= threshold is False: unchecked, a broken graph would read as "visible at every QF" (JND 100)."""
    with pytest.raises(BackendError, match="non-finite q or w"):
        fake_predictor(lambda qf: np.full(qf.shape, np.nan)).predict(image)


# -- configuration ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PredictConfig(batch_size=0), "batch size must be at least 1"),
        (lambda: PredictConfig(max_patches=0), "max patches must be at least 1"),
        (lambda: PredictConfig(stride=0), "stride must be at least 1"),
        (lambda: SearchConfig(strategy="fastest"), "unknown search strategy 'fastest'"),  # type: ignore[arg-type]
        (lambda: SearchConfig(qfs=()), "candidate QF list is empty"),
        (lambda: SearchConfig(qfs=(50, 40)), "distinct, ascending"),
        (lambda: SearchConfig(qfs=(40, 40)), "distinct, ascending"),
        (lambda: SearchConfig(qfs=(0, 50)), "within 1..100"),
        (lambda: SearchConfig(qfs=(50, 101)), "within 1..100"),
        (lambda: SearchConfig(window=4), "positive odd width"),
        (lambda: SearchConfig(window=0), "positive odd width"),
        (lambda: SearchConfig(threshold=0.0), "strictly between 0 and 1"),
        (lambda: SearchConfig(threshold=1.0), "strictly between 0 and 1"),
        (lambda: SearchConfig(coarse_steps=(4, 16)), "decreasing"),
        (lambda: SearchConfig(coarse_steps=(16, 1)), "each > 1"),
    ],
)
def test_bad_config_values_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make()


@pytest.mark.parametrize(
    "config",
    [{"jpeg_margin": 0}, {"max_pixels": 0}, {"max_patches": 2.5}, {"batch_size": True}, {"stride": 1.5}],
)
def test_bad_counts_are_refused_when_the_config_is_made(config: dict[str, object]) -> None:
    """Refused by PredictConfig itself (not truncated, and not left to fail inside the first prediction)."""
    with pytest.raises(UsageError, match=r"must be at least 1 \(.*\), got"):
        PredictConfig(**config)  # type: ignore[arg-type]
