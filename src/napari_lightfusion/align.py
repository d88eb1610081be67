"""Catching and correcting a misaligned pair: a shift estimate, rigid and translation registration.

PET and MR of one patient are often a few millimetres out of register (the
patient moved between scans); microscope channels carry a chromatic shift.
:func:`estimate_misalignment` measures the shift cheaply, to warn before
fusing; :func:`register_rigid` (medical) and :func:`register_translation`
(microscopy) find a world matrix ``T`` that puts the functional layer in
register as a transform (data-to-world ``T @ matrix``, a napari ``affine``
of ``T @ current_affine``), never a resample of the user's data.

Medical pairs are compared by Mattes mutual information (Mattes et al.,
IEEE TMI 2003), which needs no common contrast, with SimpleITK: well kept,
wheels for every platform, ITK's registration framework that 3D Slicer
builds on. Channels of one microscope share their structure, so
scikit-image's sub-pixel ``phase_cross_correlation`` does. Images are
``(Y, X)`` or ``(Z, Y, X)`` numpy or dask arrays with data-to-world
matrices in the layers' world (``z, y, x`` mm = S, P, L; :mod:`.geometry`);
SimpleITK orders axes the other way round (its physical space is LPS), and
:func:`to_sitk_image` and :func:`world_matrix` are the one place that
converts. For speed the images are cut to their common field of view and
block-averaged, and the metric samples a seeded random subset of voxels
(the same answer each run, but for the rounding of threaded sums). No Qt
or napari; SimpleITK is imported when first needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .colour import luminance
from .resample import resample

#: Seed of the metric's random sampling: the same inputs give the same answer (to ~1e-6 mm, threads' rounding).
SEED = 1729
#: Per fit, "estimate" (the translation; also the rigid fit's start) and "rigid": most voxels of the sampled
#: working image, how many of them the metric samples per resolution level, most iterations per level.
WORKING_VOXELS = {"estimate": 1 << 17, "rigid": 1 << 19}
SAMPLES = {"estimate": 5000, "rigid": 20000}
ITERATIONS = {"estimate": 60, "rigid": 120}
#: Histogram bins of Mattes mutual information.
BINS = 32
#: The finer image is blurred to the coarser one's resolution: a Gaussian of this times its largest voxel side.
RESOLUTION = 2 / 3
#: How far beyond the other image's field of view an image is kept (mm): more than any misalignment looked for.
MARGIN_MM = 30.0
#: Sub-pixel precision of phase correlation: 1 / this pixel.
UPSAMPLE = 100
#: A shift found by mutual information is reported only when MI at the shift beats MI in place by this fraction.
#: On registered Harvard pairs (2D, 256 px) the estimate wanders by 1-3.5 px with gains under 4.1 %: below this
#: it is noise (docs/volumes.md, ``python -m napari_lightfusion.research.misalignment_check``).
MIN_GAIN = 0.05

#: World axis -> (its + direction, its - direction): for patients, and for microscope pixels as displayed.
PATIENT = {0: ("superior", "inferior"), 1: ("posterior", "anterior"), 2: ("left", "right")}
PIXELS = {0: ("along +z", "along -z"), 1: ("down", "up"), 2: ("right", "left")}


class Cancelled(Exception):
    """Raised by :func:`register_rigid` when ``should_stop()`` returned true."""


@dataclass(frozen=True)
class Misalignment:
    """How far the functional image's content sits from where the anatomical image says it should be.

    ``shift_mm``: the world vector (``z, y, x`` or ``y, x``; mm, or world
    units in microscopy) from where the content should be to where it is;
    ``shift_px``: the same in pixels along the anatomical grid's axes.
    ``threshold_mm``: the largest voxel side of the two images.
    """

    shift_mm: tuple[float, ...]
    shift_px: tuple[float, ...]
    threshold_mm: float
    method: str
    #: how much better the images match at the shift than in place (MI's relative gain; 1 for phase correlation)
    gain: float = 1.0

    @property
    def distance_mm(self) -> float:
        return float(np.linalg.norm(self.shift_mm))

    @property
    def exceeds(self) -> bool:
        """Out of register: shifted by more than a voxel, and (mutual information) clearly better matched there."""
        return self.distance_mm > self.threshold_mm and self.gain >= MIN_GAIN

    def message(self, anatomical_name: str, functional_name: str) -> str:
        """One line for the user: how far and which way, in patient directions (medical) or pixels (microscopy)."""
        pixels = self.method == "phase correlation"
        vector, unit, names, digits = (self.shift_px, "px", PIXELS, 2) if pixels else (self.shift_mm, "mm", PATIENT, 1)
        size = float(np.linalg.norm(vector))
        amount = f"{size:.{digits}f}" if pixels or size < 3 else f"{size:.0f}"
        if not self.exceeds:
            why = (f"within one voxel: {self.threshold_mm:.3g} {'world units' if pixels else 'mm'}"
                   if self.distance_mm <= self.threshold_mm else f"matching only {100 * self.gain:.1f} % better there")
            return f"{functional_name} and {anatomical_name} look aligned (shift ~{amount} {unit}, {why})"
        axes = range(3 - len(vector), 3)  # the world axis of each component: 2D images have y, x
        parts = [  # left/right first, then anterior/posterior, then superior/inferior, as radiologists say it
            f"{abs(v):.{digits}f} {unit} {names[a][0 if v > 0 else 1]}"
            for a, v in sorted(zip(axes, vector), reverse=True) if round(abs(v), digits) > 0
        ]
        text = f"{functional_name} looks shifted by ~{amount} {unit} from {anatomical_name} ({', '.join(parts)})"
        if pixels and not math.isclose(size, self.distance_mm, rel_tol=1e-3):
            text += f"; {self.distance_mm:.3g} in world units"
        return text


@dataclass(frozen=True, eq=False)
class Registration:
    """A transform that puts the functional image in register: set its data-to-world to ``world_transform @ matrix``.

    ``world_transform``: ``(N + 1, N + 1)`` in the layers' world (``z, y,
    x``). ``centre_mm``: the centre of the anatomical image (of its part
    that overlaps the functional one), where :attr:`shift_mm` is measured. ``metric`` names what ``metric_before``
    and ``metric_after`` measure (at the old and at the new placement).
    """

    world_transform: np.ndarray
    centre_mm: tuple[float, ...]
    metric: str
    metric_before: float
    metric_after: float
    method: str
    library: str

    def __post_init__(self):
        matrix = np.array(self.world_transform, dtype=float)
        matrix.setflags(write=False)
        object.__setattr__(self, "world_transform", matrix)

    @property
    def shift_mm(self) -> tuple[float, ...]:
        """The translation: how far the transform moves the content at :attr:`centre_mm` (world axes)."""
        n = len(self.centre_mm)
        centre = np.asarray(self.centre_mm)
        return tuple(float(v) for v in self.world_transform[:n, :n] @ centre + self.world_transform[:n, n] - centre)

    @property
    def rotation_deg(self) -> float:
        """The angle of the transform's rotation, in degrees (0 for a translation)."""
        n = len(self.centre_mm)
        cosine = (np.trace(self.world_transform[:n, :n]) - (n - 2)) / 2
        return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))

    def record(self) -> dict:
        """Plain JSON for a result's metadata: the matrix, what made it and how well it fits."""
        n = len(self.centre_mm)
        return {
            "world_transform": self.world_transform.tolist(), "axes": ("y, x", "z, y, x")[n - 2],
            "centre_mm": list(self.centre_mm), "shift_mm": list(self.shift_mm), "rotation_deg": self.rotation_deg,
            **{key: getattr(self, key) for key in ("method", "library", "metric", "metric_before", "metric_after")},
        }


def _flip(n: int) -> np.ndarray:
    """Homogeneous reversal of ``n`` axes: numpy's ``(z, y, x)`` <-> SimpleITK's ``(x, y, z)``."""
    flip = np.eye(n + 1)
    flip[:n, :n] = np.eye(n)[::-1]
    return flip


def to_sitk_image(array: np.ndarray, matrix: np.ndarray):
    """A float32 ``SimpleITK.Image`` of ``array`` placed by its data-to-world ``matrix`` (any invertible one).

    SimpleITK's index and physical point are numpy's reversed, so its
    physical space is the world read ``x, y, z`` (LPS); spacing, origin and
    direction (rotation, shear) come from the matrix.
    """
    import SimpleITK as sitk

    array = np.ascontiguousarray(array, dtype=np.float32)
    n = array.ndim
    physical = _flip(n) @ np.asarray(matrix, dtype=float) @ _flip(n)
    spacing = np.linalg.norm(physical[:n, :n], axis=0)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in physical[:n, n]])
    image.SetDirection([float(v) for v in (physical[:n, :n] / spacing).ravel()])
    return image


def world_matrix(transform, ndim: int) -> np.ndarray:
    """A SimpleITK transform's point map (fixed -> moving physical space) as a world ``(N + 1, N + 1)`` matrix."""
    physical = np.eye(ndim + 1)
    if hasattr(transform, "GetMatrix"):  # Euler, versor, affine: x -> R (x - c) + c + t
        rotation = np.array(transform.GetMatrix()).reshape(ndim, ndim)
        centre = np.array(transform.GetCenter())
        physical[:ndim, :ndim] = rotation
        physical[:ndim, ndim] = np.array(transform.GetTranslation()) + centre - rotation @ centre
    else:  # a translation
        physical[:ndim, ndim] = transform.GetOffset()
    return _flip(ndim) @ physical @ _flip(ndim)


def _check(image, matrix, name: str, rgb: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """``image``'s matrix and spatial shape, checked with its type (nothing is read yet)."""
    shape = tuple(image.shape)
    if rgb and (len(shape) not in (3, 4) or shape[-1] not in (3, 4)):
        raise ValueError(f"the {name} image is not RGB(A) with the colour last: shape {shape}")
    spatial = shape[:-1] if rgb else shape
    if len(spatial) not in (2, 3):
        raise ValueError(f"the {name} image must be 2D (Y, X) or 3D (Z, Y, X), not shape {shape}")
    if np.dtype(image.dtype).kind not in "biuf":
        raise ValueError(f"the {name} image holds {image.dtype} values, not numbers")
    if min(spatial) == 0:
        raise ValueError(f"the {name} image is empty: shape {shape}")
    if min(spatial) < 4:
        raise ValueError(f"the {name} image is too small to align: {spatial}, at least 4 pixels along each axis")
    m = np.asarray(matrix, dtype=float)
    n = len(spatial)
    if m.shape != (n + 1, n + 1) or not np.isfinite(m).all() or abs(np.linalg.det(m[:n, :n])) < 1e-12:
        raise ValueError(f"the {name} image's data-to-world must be an invertible {n + 1}x{n + 1} matrix")
    return m, spatial


def _values(image, name: str, rgb: bool) -> np.ndarray:
    """``image`` read as finite float32 (the luminance of RGB; NaN as its lowest value); ``ValueError`` if flat."""
    data = np.asarray(image)
    data = (luminance(data.astype(np.float64)) if rgb else data).astype(np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        raise ValueError(f"the {name} image has no finite values (all NaN or infinite)")
    if not finite.all():
        data = np.where(finite, data, data[finite].min())
    if data.max() == data.min():
        raise ValueError(f"the {name} image is constant where the two overlap: there is nothing to align on")
    return data


def _bounds(shape, matrix) -> tuple[np.ndarray, np.ndarray]:
    """The world box that an image's voxel centres span."""
    n = len(shape)
    corners = np.array(np.meshgrid(*[(0, s - 1) for s in shape], indexing="ij")).reshape(n, -1)
    world = matrix[:n, :n] @ corners + matrix[:n, n:]
    return world.min(axis=1), world.max(axis=1)


def _crop(image, matrix, spatial, box):
    """The part of ``image`` within :data:`MARGIN_MM` of the world ``box``, and its matrix (a view: nothing read)."""
    n = len(spatial)
    corners = np.array(np.meshgrid(*zip(box[0] - MARGIN_MM, box[1] + MARGIN_MM), indexing="ij")).reshape(n, -1)
    index = np.linalg.solve(matrix[:n, :n], corners - matrix[:n, n:])
    start = np.clip(np.floor(index.min(axis=1)).astype(int), 0, spatial)
    stop = np.clip(np.ceil(index.max(axis=1)).astype(int) + 1, 0, spatial)
    if np.any(stop - start < 4):
        return image, matrix
    shifted = matrix.copy()
    shifted[:n, n] += matrix[:n, :n] @ start
    return image[tuple(slice(a, b) for a, b in zip(start, stop))], shifted


def _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving: bool):
    """Both images checked, cut to their common field of view (plus a margin) and read as float32."""
    fixed_matrix, fixed_shape = _check(fixed, fixed_matrix, "anatomical", False)
    moving_matrix, moving_shape = _check(moving, moving_matrix, "functional", rgb_moving)
    if len(fixed_shape) != len(moving_shape):
        raise ValueError(f"cannot align a {len(moving_shape)}D functional image with {len(fixed_shape)}D anatomy")
    fixed_box, moving_box = _bounds(fixed_shape, fixed_matrix), _bounds(moving_shape, moving_matrix)
    if np.any(np.maximum(fixed_box[0], moving_box[0]) > np.minimum(fixed_box[1], moving_box[1])):
        raise ValueError("the two images do not overlap in the world: check their scale and translate")
    fixed, fixed_matrix = _crop(fixed, fixed_matrix, fixed_shape, moving_box)
    moving, moving_matrix = _crop(moving, moving_matrix, moving_shape, fixed_box)
    return _values(fixed, "anatomical", False), fixed_matrix, _values(moving, "functional", rgb_moving), moving_matrix


def _spacing(matrix) -> np.ndarray:
    n = len(matrix) - 1
    return np.linalg.norm(np.asarray(matrix)[:n, :n], axis=0)


def _working(image, target_mm: float):
    """``image`` block-averaged (BinShrink) to voxels of about ``target_mm``: never upsampled, 4 voxels wide."""
    import SimpleITK as sitk

    factors = [max(1, min(int(target_mm / s + 0.5), n // 4)) for s, n in zip(image.GetSpacing(), image.GetSize())]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _working_pair(fixed, fixed_matrix, moving, moving_matrix, stage: str):
    """The pair in SimpleITK for Mattes MI: ``(sampled, interpolated, functional_sampled, step_mm)``.

    The metric samples the finer image (block-averaged to at most
    ``WORKING_VOXELS[stage]``) and interpolates the coarser one, whose
    largest voxel side is ``step_mm``. The finer image is blurred to the
    coarser one's resolution (:data:`RESOLUTION`): a sharp MR against a
    blurred PET biases MI's optimum (by 2 degrees on the tests' synthetic
    head, 0.2 after the blur).
    """
    import SimpleITK as sitk

    n = fixed.ndim
    functional_finer = math.prod(_spacing(moving_matrix)) < math.prod(_spacing(fixed_matrix))
    pairs = [(fixed, fixed_matrix), (moving, moving_matrix)]
    (fine, fine_matrix), (coarse, coarse_matrix) = pairs[::-1] if functional_finer else pairs
    step = float(max(_spacing(coarse_matrix)))
    volume = math.prod(fine.shape) * math.prod(_spacing(fine_matrix))
    target = max(RESOLUTION * step / 2, (volume / WORKING_VOXELS[stage]) ** (1 / n))
    sampled = _working(to_sitk_image(fine, fine_matrix), target)
    sampled = sitk.SmoothingRecursiveGaussian(sampled, RESOLUTION * step)
    interpolated = to_sitk_image(coarse, coarse_matrix)
    if stage == "estimate":  # a translation to within a voxel needs no finer
        interpolated = _working(interpolated, max(sampled.GetSpacing()))
    return sampled, interpolated, functional_finer, step


def _method(sampled, stage: str, step_mm: float):
    """A SimpleITK Mattes MI registration: two pyramid levels, seeded random sampling, regular-step descent."""
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    levels = [2, 1] if min(sampled.GetSize()) >= 16 else [1]
    voxels = math.prod(sampled.GetSize())
    fractions = [min(1.0, SAMPLES[stage] * f ** sampled.GetDimension() / voxels) for f in levels]
    method.SetMetricSamplingPercentagePerLevel(fractions, SEED)
    method.SetShrinkFactorsPerLevel(levels)
    method.SetSmoothingSigmasPerLevel([(f - 1) * step_mm for f in levels])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=step_mm, minStep=0.01 * step_mm, numberOfIterations=ITERATIONS[stage],
        relaxationFactor=0.7, gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    return method


def _run(method, sampled, interpolated) -> None:
    """``method.Execute``, with SimpleITK's multi-line exception turned into a one-line ``ValueError``."""
    try:
        method.Execute(sampled, interpolated)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1].rsplit(": ", 1)[-1]
        raise ValueError(f"registration failed: {reason}") from None


def _translation(sampled, interpolated, step_mm: float, watch=None) -> np.ndarray:
    """The MI-optimal translation (SimpleITK physical space, sampled -> interpolated image), from none."""
    import SimpleITK as sitk

    transform = sitk.TranslationTransform(sampled.GetDimension())
    method = _method(sampled, "estimate", step_mm)
    method.SetInitialTransform(transform, inPlace=True)
    if watch:
        watch(method, "estimate")
    _run(method, sampled, interpolated)
    return np.array(transform.GetOffset())


def _placement(transform, ndim: int, functional_sampled: bool) -> np.ndarray:
    """The world matrix that puts the functional image in register, from a fitted SimpleITK transform."""
    point_map = world_matrix(transform, ndim)  # the sampled image's world -> the interpolated image's
    return point_map if functional_sampled else np.linalg.inv(point_map)


def _phase_shift(fixed, fixed_matrix, moving, moving_matrix) -> np.ndarray:
    """The world shift of ``moving``'s content from ``fixed``'s, by sub-pixel phase correlation on the fixed grid.

    When the grids have the same axes and spacing, the moving image is read
    at its own pixel centres (the fixed grid moved by the grids' fractional
    offset, added back after), so no interpolation blurs the sub-pixel shift.
    """
    from skimage.registration import phase_cross_correlation

    n = fixed.ndim
    grid = fixed_matrix.copy()
    fraction = np.zeros(n)
    if np.allclose(fixed_matrix[:n, :n], moving_matrix[:n, :n]):
        offset = np.linalg.solve(fixed_matrix[:n, :n], moving_matrix[:n, n] - fixed_matrix[:n, n])
        fraction = offset - np.round(offset)
        grid[:n, n] += fixed_matrix[:n, :n] @ fraction
    warped = resample(moving, moving_matrix, fixed.shape, grid)
    shift, _, _ = phase_cross_correlation(fixed, warped, upsample_factor=UPSAMPLE)
    return fixed_matrix[:n, :n] @ (fraction - shift)


def estimate_misalignment(
    fixed, fixed_matrix, moving, moving_matrix, *, rgb_moving: bool = False, microscopy: bool = False
) -> Misalignment:
    """How far the functional image (``moving``) sits from the anatomical one (``fixed``): a cheap check before fusing.

    Medical: a translation by Mattes mutual information on block-averaged
    images (:func:`_working_pair`), a few tenths of a second for a PET
    volume against an MR. Microscopy: sub-pixel phase correlation on the
    anatomical grid. Run it off the GUI thread. ``ValueError`` (one line)
    for images that cannot be compared: empty, constant, all NaN, 2D against
    3D, not overlapping.
    """
    fixed, fixed_matrix, moving, moving_matrix = _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    threshold = float(max(*_spacing(fixed_matrix), *_spacing(moving_matrix)))
    if microscopy:
        shift, method = _phase_shift(fixed, fixed_matrix, moving, moving_matrix), "phase correlation"
    else:
        import SimpleITK as sitk

        pair = _working_pair(fixed, fixed_matrix, moving, moving_matrix, "estimate")
        sampled, interpolated, functional_sampled, step = pair
        offset = _translation(sampled, interpolated, step)
        placement = _placement(sitk.TranslationTransform(n, [float(v) for v in offset]), n, functional_sampled)
        shift, method = -placement[:n, n], "mutual information"
        gain = _gain(sampled, interpolated, step, offset)
    pixels = np.linalg.solve(fixed_matrix[:n, :n], shift)
    return Misalignment(tuple(float(v) for v in shift), tuple(float(v) for v in pixels), threshold, method,
                        gain if not microscopy else 1.0)


def _gain(sampled, interpolated, step_mm: float, offset) -> float:
    """Mattes MI's relative improvement at translation ``offset`` over none, on every voxel of the working pair."""
    import SimpleITK as sitk

    values = []
    for shift in (np.zeros_like(offset), offset):
        method = _method(sampled, "estimate", step_mm)
        method.SetMetricSamplingStrategy(method.NONE)
        method.SetInitialTransform(sitk.TranslationTransform(sampled.GetDimension(), [float(v) for v in shift]))
        try:
            values.append(method.MetricEvaluate(sampled, interpolated))
        except RuntimeError:  # too little overlap at one of them to measure: no evidence for the shift
            return 0.0
    in_place, shifted = values  # negative MI: lower is better
    return float((in_place - shifted) / abs(in_place)) if in_place else 0.0


def register_rigid(
    fixed, fixed_matrix, moving, moving_matrix, *, rgb_moving: bool = False,
    progress: Callable[[float], None] | None = None, should_stop: Callable[[], bool] | None = None,
) -> Registration:
    """The rigid transform (rotation and translation) that registers ``moving`` (functional) to ``fixed``.

    Mattes mutual information with SimpleITK: a translation start (as
    :func:`estimate_misalignment`), then an Euler2D/Euler3D transform about
    the sampled image's centre, regular-step gradient descent over two
    resolution levels of at most ``ITERATIONS["rigid"]`` iterations; a few
    seconds for a PET volume against an MR. ``progress(fraction)`` (0 to 1)
    is called as the optimiser iterates; ``should_stop()`` is polled at each
    iteration and, once true, the fit stops and :class:`Cancelled` is
    raised. ``ValueError`` as in :func:`estimate_misalignment`.
    """
    import SimpleITK as sitk

    fixed, fixed_matrix, moving, moving_matrix = _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    sampled, interpolated, functional_sampled, step = _working_pair(fixed, fixed_matrix, moving, moving_matrix, "rigid")
    stopped = []

    def check():
        if stopped or (should_stop and should_stop()):
            raise Cancelled("registration stopped")

    def watch(method, stage: str):
        start = 0.0 if stage == "estimate" else 0.5  # each fit is half of the work
        levels = len(method.GetMetricSamplingPercentagePerLevel())

        def iteration():
            if should_stop and should_stop():
                stopped.append(True)
                method.StopRegistration()
            if progress:
                done = method.GetCurrentLevel() + min(1.0, method.GetOptimizerIteration() / ITERATIONS[stage])
                progress(start + 0.5 * done / levels)

        method.AddCommand(sitk.sitkIterationEvent, iteration)

    check()
    offset = _translation(sampled, interpolated, step, watch)
    check()
    transform = sitk.Euler3DTransform() if n == 3 else sitk.Euler2DTransform()
    transform.SetCenter(sampled.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in sampled.GetSize()]))
    method = _method(sampled, "rigid", step)
    method.SetInitialTransform(transform)
    volume = math.prod(sampled.GetSize()) * math.prod(sampled.GetSpacing())  # MetricEvaluate reads every voxel:
    evaluated = _working(sampled, (volume / WORKING_VOXELS["estimate"]) ** (1 / n))  # the record's needs fewer
    before = method.MetricEvaluate(evaluated, interpolated)  # the images as placed now
    transform.SetTranslation([float(v) for v in offset])
    method.SetInitialTransform(transform, inPlace=True)  # after the change: SimpleITK copies on write
    watch(method, "rigid")
    _run(method, sampled, interpolated)
    check()
    after = method.MetricEvaluate(evaluated, interpolated)
    if progress:
        progress(1.0)
    low, high = _bounds(fixed.shape, fixed_matrix)
    return Registration(
        world_transform=_placement(transform, n, functional_sampled),
        centre_mm=tuple(float(v) for v in (low + high) / 2),
        metric=f"Mattes mutual information, {BINS} bins (negative: lower is better)",
        metric_before=float(before),
        metric_after=float(after),
        method=f"rigid (Euler{n}DTransform), Mattes mutual information, regular-step gradient descent, 2 levels",
        library=f"SimpleITK {sitk.__version__}",
    )


def register_translation(fixed, fixed_matrix, moving, moving_matrix, *, rgb_moving: bool = False) -> Registration:
    """The sub-pixel translation that registers one microscope channel (``moving``) to another (``fixed``).

    Phase correlation (scikit-image, as :func:`estimate_misalignment` with
    ``microscopy``), returned as a :class:`Registration` whose metric is the
    Pearson correlation of the two on the fixed grid, before and after.
    ``ValueError`` as in :func:`estimate_misalignment`.
    """
    import skimage

    fixed, fixed_matrix, moving, moving_matrix = _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    transform = np.eye(n + 1)
    transform[:n, n] = -_phase_shift(fixed, fixed_matrix, moving, moving_matrix)

    def correlation(matrix) -> float:
        return float(np.corrcoef(fixed.ravel(), resample(moving, matrix, fixed.shape, fixed_matrix).ravel())[0, 1])

    low, high = _bounds(fixed.shape, fixed_matrix)
    return Registration(
        world_transform=transform,
        centre_mm=tuple(float(v) for v in (low + high) / 2),
        metric="Pearson correlation on the anatomical grid (higher is better)",
        metric_before=correlation(moving_matrix),
        metric_after=correlation(transform @ moving_matrix),
        method=f"translation, phase correlation (1/{UPSAMPLE} pixel)",
        library=f"scikit-image {skimage.__version__}",
    )
