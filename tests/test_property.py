"""Property test: ``fuse`` either gives a sane image or says what is wrong; inputs stay put.

Hypothesis draws pairs of arrays of random shapes (1 x 1 up to a few
hundred pixels, mostly small), data types (bool, integers, floats, and a few
non-image types), layouts (2D, stacks, RGB, RGBA, two channels, 1D, 4D+),
contents (constant, extreme ranges, NaN and inf, all missing) and memory
layouts (views with negative strides, Fortran order), with random tiles,
map channels and contrast limits. For every draw:

* ``fuse`` returns a finite fused image in [0, 1] of the shape the inputs
  imply, with finite maps of shape ``(2, *spatial)`` (surprise >= 0,
  attention in [0, 1]), or raises ``ValueError`` with a non-empty message;
  any other exception fails the test;
* neither input is modified (checked by hashing its bytes before and after).

The number of cases tried and how they ended is printed at the end of the
session (``property cases: ...``), with the Hypothesis profile: "ci" (250
examples, the default and what CI runs) or "long" (10,000 examples), chosen
with ``pytest --hypothesis-profile=long`` or ``HYPOTHESIS_PROFILE=long``
(profiles are registered in ``tests/conftest.py``).
"""

from __future__ import annotations

import collections
import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_lightfusion import fuse

OUTCOMES: collections.Counter = collections.Counter()

GOOD_DTYPES = ["bool", "uint8", "uint16", "int16", "float16", "float32", "float64"]
ODD_DTYPES = ["int32", "uint32", "int64", "complex64", "<U1", "object"]
LAYOUTS = ["2d"] * 6 + ["stack"] * 2 + ["rgb"] * 2 + ["rgba", "two", "stack_rgb", "1d", "5d", "empty"]
CONTENTS = ["random"] * 4 + ["constant", "huge", "tiny", "nan_some", "inf_some", "all_missing", "binary"]


@pytest.fixture(scope="module", autouse=True)
def report_counts(request):
    """Print how many cases ran and how they ended, once the module is done."""
    yield
    total = sum(OUTCOMES.values())
    profile = settings.get_current_profile_name()
    lines = [
        f"property cases ({profile} profile, max_examples={settings.default.max_examples}): "
        f"{total} tried, {OUTCOMES['ok']} fused, {total - OUTCOMES['ok']} refused"
    ]
    for outcome, n in OUTCOMES.most_common():
        if outcome != "ok":
            lines.append(f"  {n:4d} x ValueError: {outcome}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:  # pragma: no cover
            print(line)


def _shape(layout: str, z: int, h: int, w: int) -> tuple[int, ...]:
    return {
        "2d": (h, w),
        "stack": (z, h, w),
        "rgb": (h, w, 3),
        "rgba": (h, w, 4),
        "two": (h, w, 2),
        "stack_rgb": (z, h, w, 3),
        "1d": (w,),
        "5d": (1, z, h, w, 3),
        "empty": (0, w),
    }[layout]


def _values(rng: np.random.Generator, shape, dtype: str, content: str) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` with the drawn kind of content."""
    if dtype == "<U1":
        return np.full(shape, "x")
    if dtype == "object":
        return np.full(shape, None, dtype=object)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) < (0.0 if content == "constant" else 0.5)
    if content == "binary":
        base = rng.random(shape) < 0.5
    elif content == "constant":
        base = np.full(shape, rng.random() * 100)
    elif content == "huge":
        with np.errstate(over="ignore"):  # some values overflow to inf: wanted
            base = rng.standard_normal(shape) * 1e308
    elif content == "tiny":
        base = rng.standard_normal(shape) * 1e-310  # subnormal doubles
    else:
        base = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 6)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if content == "huge":
            out = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
        else:
            out = np.clip(np.nan_to_num(base), info.min, info.max).astype(dt)
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        out = base.astype(dt)
    if dt.kind in "fc" and out.size:
        if content == "nan_some":
            out.flat[rng.integers(0, out.size, max(1, out.size // 5))] = np.nan
        elif content == "inf_some":
            idx = rng.integers(0, out.size, max(1, out.size // 5))
            out.flat[idx] = np.where(rng.random(idx.size) < 0.5, np.inf, -np.inf)
        elif content == "all_missing":
            out[...] = np.nan
            out.flat[::2] = np.inf
    return out


@st.composite
def images(draw, z, h, w, layout=None):
    """One input array: drawn data type, layout, content and memory order."""
    layout = layout or draw(st.sampled_from(LAYOUTS))
    dtype = draw(st.sampled_from(GOOD_DTYPES * 4 + ODD_DTYPES))
    content = draw(st.sampled_from(CONTENTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    array = _values(rng, _shape(layout, z, h, w), dtype, content)
    order = draw(st.sampled_from(["c"] * 4 + ["flipped", "fortran"]))
    if order == "flipped" and array.ndim >= 2:
        array = array[::-1, ::-1]
    elif order == "fortran":
        array = np.asfortranarray(array)
    return array


@st.composite
def cases(draw):
    """A pair of images (same layout mostly, sometimes not) and ``fuse`` keywords."""
    large = draw(st.integers(0, 19)) == 0
    if large:
        h, w = draw(st.integers(100, 600)), draw(st.integers(1, 500))
        h, w = (h, w) if draw(st.booleans()) else (w, h)
        z = 1
    else:
        h, w, z = draw(st.integers(1, 24)), draw(st.integers(1, 24)), draw(st.integers(1, 3))
    layout = draw(st.sampled_from(LAYOUTS))
    a = draw(images(z, h, w, layout))
    same = draw(st.integers(0, 5)) > 0
    b = (
        draw(images(z, h, w, layout if draw(st.booleans()) else None))
        if same
        else draw(images(draw(st.integers(1, 3)), draw(st.integers(1, 24)), draw(st.integers(1, 24))))
    )
    kwargs = {"device": "cpu"}
    if draw(st.booleans()):
        kwargs["tile"] = draw(st.sampled_from([16, 17, 32, 64, 8]))
    if draw(st.integers(0, 5)) == 0:
        kwargs["channel"] = draw(st.sampled_from([3, -1, 16, 99]))
    if draw(st.integers(0, 7)) == 0:
        kwargs["a_limits"] = draw(
            st.sampled_from([(0.0, 1.0), (10.0, 10.0), (5.0, -5.0), (0.0, float("nan")), (-np.inf, np.inf), (0, 200)])
        )
    if draw(st.integers(0, 9)) == 0:
        kwargs["preset"] = draw(st.sampled_from(["CT-MRI", "no-such-preset"]))
    return a, b, kwargs


def _digest(array: np.ndarray) -> tuple:
    """What must not change on an input: shape, dtype, strides and the bytes' hash."""
    if array.dtype == object:
        return (array.shape, array.dtype.str, repr(array.tolist()))
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
    return (array.shape, array.dtype.str, array.strides, digest)


def _expected(a: np.ndarray, b: np.ndarray):
    """Spatial shape and colour of a valid pair, by the rules of ``inputs``."""
    rgb = [x.ndim >= 3 and x.shape[-1] in (3, 4) for x in (a, b)]
    spatial = a.shape[:-1] if rgb[0] else a.shape
    return spatial, any(rgb)


@given(cases())
def test_fuse_gives_a_sane_image_or_a_clear_error(case):
    a, b, kwargs = case
    before = (_digest(a), _digest(b))
    try:
        result = fuse(a, b, maps=True, **kwargs)
    except ValueError as exc:
        message = str(exc).strip()
        assert message, f"empty ValueError message ({type(exc).__name__})"
        OUTCOMES[" ".join(message.split()[:6])[:60]] += 1
    else:
        OUTCOMES["ok"] += 1
        spatial, colour = _expected(a, b)
        fused = result.fused
        assert fused.dtype == np.float32
        want = (*spatial, 3) if colour else tuple(spatial)
        assert fused.shape == want, (fused.shape, want)
        assert np.isfinite(fused).all(), "fused image has non-finite values"
        assert fused.min() >= 0.0 and fused.max() <= 1.0, (fused.min(), fused.max())
        assert result.attention.shape == (2, *spatial)
        assert np.isfinite(result.attention).all()
        assert result.attention.min() >= 0.0 and result.attention.max() <= 1.0
        if result.surprise is not None:
            assert result.surprise.shape == (2, *spatial)
            assert np.isfinite(result.surprise).all() and result.surprise.min() >= 0.0
    finally:
        assert (_digest(a), _digest(b)) == before, "an input was modified"


def test_profiles_short_for_ci_and_long_on_request():
    assert settings.get_profile("ci").max_examples == 250
    assert settings.get_profile("long").max_examples >= 10_000
    assert settings.get_profile("long").deadline is None
