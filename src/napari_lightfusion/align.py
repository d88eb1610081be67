"""Catching and correcting a misaligned pair: a shift estimate, rigid and translation registration.

Real PET and MR of one patient are often a few millimetres out of register
(the patient moved between scans), and microscope channels carry a chromatic
shift. :func:`estimate_misalignment` measures the shift cheaply, so that the
caller can warn before fusing; :func:`register_rigid` (medical) and
:func:`register_translation` (microscopy) find the transform that puts the
functional image in register. Following the project's rule that registration
is a transform, not a resample of the user's data, the result is a world
matrix ``T`` for the functional layer's data-to-world (``T @ matrix``, a
napari ``affine`` of ``T @ current_affine``); the pixels are never touched.

Medical images are compared by Mattes mutual information (Mattes et al.,
"PET-CT image registration in the chest using free-form deformations", IEEE
TMI 2003), which needs no common contrast between the modalities, with
SimpleITK: it is well kept, has wheels for every platform, and is ITK's
registration framework, the one 3D Slicer builds on. Microscope channels of
one camera share their structure, so scikit-image's sub-pixel
``phase_cross_correlation`` is enough (and exact to a tenth of a pixel).

Geometry: images are ``(Y, X)`` or ``(Z, Y, X)`` numpy (or dask) arrays with
homogeneous data-to-world matrices in the layer's world (``z, y, x`` mm:
superior, posterior, left; see :mod:`.geometry`). SimpleITK orders indices
and points the other way round, ``x, y, z``, which makes its physical space
the DICOM patient system LPS: :func:`to_sitk_image` and :func:`world_matrix`
are the one place that converts. Speed: images are block-averaged
(SimpleITK's BinShrink) to at most :data:`WORKING_VOXELS`, and the metric
samples a seeded random subset of voxels, so results are deterministic. No
Qt or napari here; SimpleITK is imported when first needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .colour import luminance
from .resample import resample

#: Seed of the metric's random sampling: the same inputs always give the same answer.
SEED = 1729
#: Largest number of voxels of a working (block-averaged) image for the shift estimate and the rigid fit.
WORKING_VOXELS = {"estimate": 1 << 17, "rigid": 1 << 19}
#: Fraction of the working image's voxels that the metric samples (at least :data:`MIN_SAMPLES`).
SAMPLING = 0.1
MIN_SAMPLES = 8000
#: Histogram bins of Mattes mutual information.
BINS = 32
#: Most optimiser iterations per resolution level.
ITERATIONS = {"estimate": 60, "rigid": 120}
#: The finer image is blurred to the coarser one's resolution: a Gaussian of this times its voxel side.
RESOLUTION = 2 / 3
#: How far beyond the other image's field of view an image is kept (mm): more than any misalignment looked for.
MARGIN_MM = 30.0
#: Sub-pixel precision of phase correlation: 1 / this pixel.
UPSAMPLE = 100

#: World axis -> (name of its + direction, of its - direction), for patients and for microscope pixels.
PATIENT = {0: ("superior", "inferior"), 1: ("posterior", "anterior"), 2: ("left", "right")}
PIXELS = {0: ("along +z", "along -z"), 1: ("down", "up"), 2: ("right", "left")}


class Cancelled(Exception):
    """Raised by :func:`register_rigid` when ``should_stop()`` asked it to stop."""


@dataclass(frozen=True)
class Misalignment:
    """How far the functional image's content sits from where the anatomical image says it should be.

    ``shift_mm``: the world vector (``z, y, x``, or ``y, x`` in 2D; mm, or
    the layer's world units in microscopy) from where the content should be
    to where it is. ``shift_px``: the same in pixels of the anatomical grid,
    along its index axes. ``threshold_mm``: about one voxel of the coarser
    grid (the largest voxel side of the two images).
    """

    shift_mm: tuple[float, ...]
    shift_px: tuple[float, ...]
    threshold_mm: float
    method: str

    @property
    def distance_mm(self) -> float:
        return float(np.linalg.norm(self.shift_mm))

    @property
    def exceeds(self) -> bool:
        return self.distance_mm > self.threshold_mm

    def message(self, anatomical_name: str, functional_name: str) -> str:
        """One line for the user: how far and which way, in patient directions (medical) or pixels (microscopy)."""
        microscopy = self.method == "phase correlation"
        vector, unit, names = (self.shift_px, "px", PIXELS) if microscopy else (self.shift_mm, "mm", PATIENT)
        axes = range(3 - len(vector), 3)  # world axis of each component: a 2D image has y, x
        size = float(np.linalg.norm(vector))
        parts = [
            f"{abs(v):.{2 if microscopy else 1}f} {unit} {names[a][0 if v > 0 else 1]}"
            for a, v in sorted(zip(axes, vector), reverse=True)  # x (left/right) first, as radiologists say it
            if abs(v) >= (0.01 if microscopy else 0.05)
        ]
        amount = f"{size:.2f}" if microscopy else (f"{size:.0f}" if size >= 3 else f"{size:.1f}")
        if not self.exceeds:
            return (
                f"{functional_name} and {anatomical_name} look aligned (shift ~{amount} {unit}, "
                f"within one voxel of {self.threshold_mm:.3g} {'world units' if microscopy else 'mm'})"
            )
        text = f"{functional_name} looks shifted by ~{amount} {unit} from {anatomical_name} ({', '.join(parts)})"
        if microscopy and not math.isclose(size, self.distance_mm, rel_tol=1e-3):
            text += f"; {self.distance_mm:.3g} in world units"
        return text


@dataclass(frozen=True, eq=False)
class Registration:
    """A transform that puts the functional image in register: set its data-to-world to ``world_transform @ matrix``.

    ``world_transform``: ``(N + 1, N + 1)`` in the layer's world (``z, y, x``).
    ``centre_mm``: the world point the fit was centred on (the anatomical
    image's centre); ``metric`` names what ``metric_before`` and
    ``metric_after`` measure (at the old and the new placement).
    """

    world_transform: np.ndarray
    centre_mm: tuple[float, ...]
    metric: str
    metric_before: float
    metric_after: float
    method: str
    library: str

    @property
    def shift_mm(self) -> tuple[float, ...]:
        """The transform's translation: how far it moves the content at :attr:`centre_mm` (world axes)."""
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
        return {
            "world_transform": [[float(v) for v in row] for row in self.world_transform],
            "axes": "y, x (mm)" if len(self.centre_mm) == 2 else "z, y, x (mm)",
            "shift_mm": list(self.shift_mm),
            "rotation_deg": self.rotation_deg,
            "method": self.method,
            "library": self.library,
            "metric": self.metric,
            "metric_before": self.metric_before,
            "metric_after": self.metric_after,
        }


def _flip(n: int) -> np.ndarray:
    """Homogeneous reversal of ``n`` axes: numpy's ``(z, y, x)`` <-> SimpleITK's ``(x, y, z)``."""
    flip = np.eye(n + 1)
    flip[:n, :n] = np.eye(n)[::-1]
    return flip


def to_sitk_image(array: np.ndarray, matrix: np.ndarray):
    """A float32 ``SimpleITK.Image`` of ``array`` placed by its data-to-world ``matrix``.

    SimpleITK's index and physical point are numpy's reversed, so its
    physical space is the world read ``x, y, z`` (LPS). Spacing, origin and
    direction come from the matrix: any invertible one (rotated, sheared).
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


def _check(image, matrix, name: str, rgb: bool) -> np.ndarray:
    """``image``'s data-to-world matrix, checked with its shape and type (nothing is read yet)."""
    shape = tuple(image.shape)
    if rgb and (len(shape) not in (3, 4) or shape[-1] not in (3, 4)):
        raise ValueError(f"the {name} image is not RGB(A) with the colour last: shape {shape}")
    spatial = shape[:-1] if rgb else shape
    if len(spatial) not in (2, 3):
        raise ValueError(f"the {name} image must be 2D (Y, X) or 3D (Z, Y, X), not shape {shape}")
    if np.dtype(image.dtype).kind not in "biuf":
        raise ValueError(f"the {name} image holds {image.dtype} values, not numbers")
    if min(spatial) < 4:
        raise ValueError(f"the {name} image is too small to align: {spatial}, at least 4 pixels along each axis")
    m = np.asarray(matrix, dtype=float)
    n = len(spatial)
    if m.shape != (n + 1, n + 1) or not np.isfinite(m).all() or abs(np.linalg.det(m[:n, :n])) < 1e-12:
        raise ValueError(f"the {name} image's data-to-world must be an invertible {n + 1}x{n + 1} matrix")
    return m


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
        raise ValueError(f"the {name} image is constant: there is nothing to align on")
    return data


def _bounds(shape, matrix) -> tuple[np.ndarray, np.ndarray]:
    """The world box that an image's voxel centres span."""
    n = len(shape)
    corners = np.array(np.meshgrid(*[(0, s - 1) for s in shape], indexing="ij")).reshape(n, -1)
    world = matrix[:n, :n] @ corners + matrix[:n, n:]
    return world.min(axis=1), world.max(axis=1)


def _crop(image, matrix, spatial, box):
    """The part of ``image`` within :data:`MARGIN_MM` of the world ``box``, and its matrix (a view: nothing is read)."""
    n = len(spatial)
    low, high = box[0] - MARGIN_MM, box[1] + MARGIN_MM
    corners = np.array(np.meshgrid(*zip(low, high), indexing="ij")).reshape(n, -1)
    index = np.linalg.solve(matrix[:n, :n], corners - matrix[:n, n:])
    start = np.clip(np.floor(index.min(axis=1)).astype(int), 0, spatial)
    stop = np.clip(np.ceil(index.max(axis=1)).astype(int) + 1, 0, spatial)
    if np.any(stop - start < 4):
        return image, matrix
    shifted = matrix.copy()
    shifted[:n, n] += matrix[:n, :n] @ start
    return image[tuple(slice(a, b) for a, b in zip(start, stop))], shifted


def _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving: bool):
    """Both images checked, cut to their common field of view (plus a margin), read as float32."""
    fixed_matrix = _check(fixed, fixed_matrix, "anatomical", False)
    moving_matrix = _check(moving, moving_matrix, "functional", rgb_moving)
    fixed_shape = tuple(fixed.shape)
    moving_shape = tuple(moving.shape)[:-1] if rgb_moving else tuple(moving.shape)
    if len(fixed_shape) != len(moving_shape):
        raise ValueError(
            f"cannot align a {len(moving_shape)}D functional image with a {len(fixed_shape)}D anatomical one"
        )
    fixed_box, moving_box = _bounds(fixed_shape, fixed_matrix), _bounds(moving_shape, moving_matrix)
    if np.any(np.maximum(fixed_box[0], moving_box[0]) > np.minimum(fixed_box[1], moving_box[1])):
        raise ValueError("the two images do not overlap in the world: check their scale and translate")
    fixed, fixed_matrix = _crop(fixed, fixed_matrix, fixed_shape, moving_box)
    moving, moving_matrix = _crop(moving, moving_matrix, moving_shape, fixed_box)
    return (
        _values(fixed, "anatomical", False), fixed_matrix, _values(moving, "functional", rgb_moving), moving_matrix
    )


def _spacing(matrix) -> np.ndarray:
    n = len(matrix) - 1
    return np.linalg.norm(np.asarray(matrix)[:n, :n], axis=0)


def _working(image, target_mm: float):
    """``image`` block-averaged (BinShrink) to voxels of about ``target_mm``, never upsampled, 4 voxels wide at least."""
    import SimpleITK as sitk

    factors = [max(1, min(int(target_mm / s + 0.5), n // 4)) for s, n in zip(image.GetSpacing(), image.GetSize())]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _working_pair(fixed, fixed_matrix, moving, moving_matrix, stage: str):
    """The pair in SimpleITK for Mattes MI: ``(sampled, interpolated, functional_sampled, step_mm)``.

    The metric samples the finer image (block-averaged to at most
    :data:`WORKING_VOXELS`) and interpolates the coarser one. The finer image
    is first blurred to the coarser one's resolution (a Gaussian of
    :data:`RESOLUTION` times its largest voxel side): a sharp MR against a
    blurred PET biases MI's optimum (by 2 degrees on the tests' synthetic
    head; by 0.2 after the blur). ``step_mm`` is the coarser voxel side.
    """
    import SimpleITK as sitk

    n = fixed.ndim
    functional_finer = math.prod(_spacing(moving_matrix)) < math.prod(_spacing(fixed_matrix))
    pairs = [(fixed, fixed_matrix), (moving, moving_matrix)]
    (fine, fine_matrix), (coarse, coarse_matrix) = pairs[::-1] if functional_finer else pairs
    step = float(max(_spacing(coarse_matrix)))
    sigma = RESOLUTION * step
    volume = math.prod(fine.shape) * math.prod(_spacing(fine_matrix))
    sampled = _working(to_sitk_image(fine, fine_matrix), max(sigma / 2, (volume / WORKING_VOXELS[stage]) ** (1 / n)))
    if min(sampled.GetSize()) >= 4:
        sampled = sitk.SmoothingRecursiveGaussian(sampled, sigma)
    return sampled, to_sitk_image(coarse, coarse_matrix), functional_finer, step


def _method(fixed_image, stage: str, step_mm: float):
    """A SimpleITK Mattes MI registration: two pyramid levels, seeded random sampling, regular-step descent."""
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    levels = [2, 1] if min(fixed_image.GetSize()) >= 16 else [1]
    voxels = math.prod(fixed_image.GetSize())
    method.SetMetricSamplingPercentagePerLevel(
        [min(1.0, max(SAMPLING, MIN_SAMPLES * f ** fixed_image.GetDimension() / voxels)) for f in levels], SEED
    )
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


def _run(method, fixed_image, moving_image) -> None:
    """``method.Execute``, with SimpleITK's multi-line exception turned into a one-line ``ValueError``."""
    try:
        method.Execute(fixed_image, moving_image)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1].rsplit(": ", 1)[-1]
        raise ValueError(f"registration failed: {reason}") from None


def _translation(sampled, interpolated, step_mm: float, stage: str, watch=None) -> np.ndarray:
    """The MI-optimal translation (SimpleITK physical space, sampled -> interpolated), from none."""
    import SimpleITK as sitk

    transform = sitk.TranslationTransform(sampled.GetDimension())
    method = _method(sampled, stage, step_mm)
    method.SetInitialTransform(transform, inPlace=True)
    if watch:
        watch(method)
    _run(method, sampled, interpolated)
    return np.array(transform.GetOffset())


def _placement(transform, ndim: int, functional_sampled: bool) -> np.ndarray:
    """The world matrix that puts the functional image in register, from a fitted SimpleITK transform."""
    point_map = world_matrix(transform, ndim)  # sampled image's world -> interpolated image's
    return point_map if functional_sampled else np.linalg.inv(point_map)


def _phase_shift(fixed, fixed_matrix, moving, moving_matrix) -> np.ndarray:
    """The world shift of ``moving``'s content from ``fixed``'s, by sub-pixel phase correlation on the fixed grid.

    When both grids have the same axes and spacing, the moving image is read
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
    images (see :func:`_working_pair`). Microscopy: sub-pixel phase
    correlation on the anatomical grid. Well under a second for a PET volume
    against an MR; call it off the GUI thread. ``ValueError`` (one line) for
    images that cannot be compared: empty, constant, all NaN, 2D against 3D,
    not overlapping.
    """
    fixed, fixed_matrix, moving, moving_matrix = _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    threshold = float(max(*_spacing(fixed_matrix), *_spacing(moving_matrix)))
    if microscopy:
        shift, method = _phase_shift(fixed, fixed_matrix, moving, moving_matrix), "phase correlation"
    else:
        import SimpleITK as sitk

        sampled, interpolated, functional_sampled, step = _working_pair(
            fixed, fixed_matrix, moving, moving_matrix, "estimate"
        )
        offset = _translation(sampled, interpolated, step, "estimate")
        placement = _placement(sitk.TranslationTransform(n, [float(v) for v in offset]), n, functional_sampled)
        shift, method = -placement[:n, n], "mutual information"
    pixels = np.linalg.solve(fixed_matrix[:n, :n], shift)
    return Misalignment(tuple(float(v) for v in shift), tuple(float(v) for v in pixels), threshold, method)


def register_rigid(
    fixed,
    fixed_matrix,
    moving,
    moving_matrix,
    *,
    rgb_moving: bool = False,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Registration:
    """The rigid transform (rotation and translation) that registers ``moving`` (functional) to ``fixed``.

    Mattes mutual information with SimpleITK (Euler2D or Euler3D transform,
    regular-step gradient descent, two pyramid levels of at most
    ``ITERATIONS["rigid"]`` iterations), started from the MI translation and
    centred on the common field of view. ``progress`` is called with the
    fraction done (0 to 1) as the optimiser iterates; ``should_stop`` is
    polled at each iteration and, when it returns true, the fit stops and
    :class:`Cancelled` is raised. ``ValueError`` for images that cannot be
    registered (see :func:`estimate_misalignment`).
    """
    import SimpleITK as sitk

    fixed, fixed_matrix, moving, moving_matrix = _pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    sampled, interpolated, functional_sampled, step = _working_pair(fixed, fixed_matrix, moving, moving_matrix, "rigid")
    state = {"stage": 0, "stopped": False}
    stages = 2  # the translation start, then the rigid fit

    def watch(method):
        levels = len(method.GetMetricSamplingPercentagePerLevel())

        def iteration():
            if should_stop and should_stop():
                state["stopped"] = True
                method.StopRegistration()
            if progress:
                done = method.GetCurrentLevel() + min(1.0, method.GetOptimizerIteration() / ITERATIONS["rigid"])
                progress((state["stage"] + done / levels) / stages)

        method.AddCommand(sitk.sitkIterationEvent, iteration)

    offset = _translation(sampled, interpolated, step, "rigid", watch)
    if state["stopped"]:
        raise Cancelled("registration stopped")
    centre = sampled.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in sampled.GetSize()])
    transform = sitk.Euler3DTransform() if n == 3 else sitk.Euler2DTransform()
    transform.SetCenter(centre)
    method = _method(sampled, "rigid", step)
    method.SetInitialTransform(transform)
    before = method.MetricEvaluate(sampled, interpolated)  # the images as placed now
    transform.SetTranslation([float(v) for v in offset])
    method.SetInitialTransform(transform, inPlace=True)  # after the change: SimpleITK copies on write
    state["stage"] = 1
    watch(method)
    _run(method, sampled, interpolated)
    if state["stopped"]:
        raise Cancelled("registration stopped")
    after = method.MetricEvaluate(sampled, interpolated)
    if progress:
        progress(1.0)
    low, high = _bounds(fixed.shape, fixed_matrix)
    return Registration(
        world_transform=_placement(transform, n, functional_sampled),
        centre_mm=tuple(float(v) for v in (low + high) / 2),
        metric="Mattes mutual information (negative; lower is better)",
        metric_before=float(before),
        metric_after=float(after),
        method=f"rigid (Euler{n}D), Mattes mutual information, 2 resolution levels",
        library=f"SimpleITK {sitk.__version__}",
    )


def register_translation(fixed, fixed_matrix, moving, moving_matrix, *, rgb_moving: bool = False) -> Registration:
    """The sub-pixel translation that registers one microscope channel (``moving``) to another (``fixed``).

    Phase correlation (scikit-image), returned as a :class:`Registration`
    whose metric is the Pearson correlation of the two on the fixed grid,
    before and after. ``ValueError`` as in :func:`estimate_misalignment`.
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
