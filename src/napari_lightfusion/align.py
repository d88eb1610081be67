"""Catching and correcting a misaligned pair: a shift estimate, rigid and translation registration.

PET and MR of one patient are often a few millimetres out of register (the
patient moved between scans); microscope channels carry a chromatic shift.
:func:`estimate_misalignment` measures the shift cheaply, to warn before
fusing; :func:`register_rigid` (medical) and :func:`register_translation`
(microscopy) find a world matrix ``T`` that puts the functional layer in
register as a transform (data-to-world ``T @ matrix``, a napari ``affine``
of ``T @ current_affine``), never a resample of the user's data.

Medical pairs are compared by Mattes mutual information with SimpleITK
(:mod:`napari_lightfusion.mutual_information`). Channels of one microscope
share their structure, so scikit-image's sub-pixel ``phase_cross_correlation``
does. Images are ``(Y, X)`` or ``(Z, Y, X)`` numpy or dask arrays with
data-to-world matrices in the layers' world (``z, y, x`` mm = S, P, L;
:mod:`.geometry`), checked and cut to their common field of view first
(:mod:`napari_lightfusion.alignment_inputs`). No Qt or napari; SimpleITK is
imported when first needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .alignment_inputs import bounds, matrix_spacing, prepare_pair
from .mutual_information import (
    BINS,
    ITERATIONS,
    WORKING_VOXELS,
    block_average,
    fit_translation,
    fitted_placement,
    mattes_method,
    mi_gain,
    run_registration,
    working_pair,
)
from .resample import resample

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
            why = (
                f"within one voxel: {self.threshold_mm:.3g} {'world units' if pixels else 'mm'}"
                if self.distance_mm <= self.threshold_mm
                else f"matching only {100 * self.gain:.1f} % better there"
            )
            return f"{functional_name} and {anatomical_name} look aligned (shift ~{amount} {unit}, {why})"
        axes = range(3 - len(vector), 3)  # the world axis of each component: 2D images have y, x
        parts = [  # left/right first, then anterior/posterior, then superior/inferior, as radiologists say it
            f"{abs(v):.{digits}f} {unit} {names[a][0 if v > 0 else 1]}"
            for a, v in sorted(zip(axes, vector), reverse=True)
            if round(abs(v), digits) > 0
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
            "world_transform": self.world_transform.tolist(),
            "axes": ("y, x", "z, y, x")[n - 2],
            "centre_mm": list(self.centre_mm),
            "shift_mm": list(self.shift_mm),
            "rotation_deg": self.rotation_deg,
            **{key: getattr(self, key) for key in ("method", "library", "metric", "metric_before", "metric_after")},
        }


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
    images (:func:`working_pair`), a few tenths of a second for a PET
    volume against an MR. Microscopy: sub-pixel phase correlation on the
    anatomical grid. Run it off the GUI thread. ``ValueError`` (one line)
    for images that cannot be compared: empty, constant, all NaN, 2D against
    3D, not overlapping.
    """
    fixed, fixed_matrix, moving, moving_matrix = prepare_pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    threshold = float(max(*matrix_spacing(fixed_matrix), *matrix_spacing(moving_matrix)))
    if microscopy:
        shift, method = _phase_shift(fixed, fixed_matrix, moving, moving_matrix), "phase correlation"
    else:
        import SimpleITK as sitk

        pair = working_pair(fixed, fixed_matrix, moving, moving_matrix, "estimate")
        sampled, interpolated, functional_sampled, step = pair
        offset = fit_translation(sampled, interpolated, step)
        placement = fitted_placement(sitk.TranslationTransform(n, [float(v) for v in offset]), n, functional_sampled)
        shift, method = -placement[:n, n], "mutual information"
        gain = mi_gain(sampled, interpolated, step, offset)
    pixels = np.linalg.solve(fixed_matrix[:n, :n], shift)
    return Misalignment(
        tuple(float(v) for v in shift),
        tuple(float(v) for v in pixels),
        threshold,
        method,
        gain if not microscopy else 1.0,
    )


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

    fixed, fixed_matrix, moving, moving_matrix = prepare_pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    sampled, interpolated, functional_sampled, step = working_pair(fixed, fixed_matrix, moving, moving_matrix, "rigid")
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
    offset = fit_translation(sampled, interpolated, step, watch)
    check()
    transform = sitk.Euler3DTransform() if n == 3 else sitk.Euler2DTransform()
    transform.SetCenter(sampled.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in sampled.GetSize()]))
    method = mattes_method(sampled, "rigid", step)
    method.SetInitialTransform(transform)
    volume = math.prod(sampled.GetSize()) * math.prod(sampled.GetSpacing())  # MetricEvaluate reads every voxel:
    evaluated = block_average(sampled, (volume / WORKING_VOXELS["estimate"]) ** (1 / n))  # the record's needs fewer
    before = method.MetricEvaluate(evaluated, interpolated)  # the images as placed now
    transform.SetTranslation([float(v) for v in offset])
    method.SetInitialTransform(transform, inPlace=True)  # after the change: SimpleITK copies on write
    watch(method, "rigid")
    run_registration(method, sampled, interpolated)
    check()
    after = method.MetricEvaluate(evaluated, interpolated)
    if progress:
        progress(1.0)
    low, high = bounds(fixed.shape, fixed_matrix)
    return Registration(
        world_transform=fitted_placement(transform, n, functional_sampled),
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

    fixed, fixed_matrix, moving, moving_matrix = prepare_pair(fixed, fixed_matrix, moving, moving_matrix, rgb_moving)
    n = fixed.ndim
    transform = np.eye(n + 1)
    transform[:n, n] = -_phase_shift(fixed, fixed_matrix, moving, moving_matrix)

    def correlation(matrix) -> float:
        return float(np.corrcoef(fixed.ravel(), resample(moving, matrix, fixed.shape, fixed_matrix).ravel())[0, 1])

    low, high = bounds(fixed.shape, fixed_matrix)
    return Registration(
        world_transform=transform,
        centre_mm=tuple(float(v) for v in (low + high) / 2),
        metric="Pearson correlation on the anatomical grid (higher is better)",
        metric_before=correlation(moving_matrix),
        metric_after=correlation(transform @ moving_matrix),
        method=f"translation, phase correlation (1/{UPSAMPLE} pixel)",
        library=f"scikit-image {skimage.__version__}",
    )
