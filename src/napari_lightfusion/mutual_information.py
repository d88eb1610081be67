"""Mattes mutual information with SimpleITK: the pair in ITK's space, the working images, the fits.

Medical pairs are compared by Mattes mutual information (Mattes et al.,
IEEE TMI 2003), which needs no common contrast, with SimpleITK: well kept,
wheels for every platform, ITK's registration framework that 3D Slicer
builds on. SimpleITK orders axes the other way round from numpy (its
physical space is the world read ``x, y, z``, LPS), and
:func:`to_sitk_image` and :func:`world_matrix` are the one place that
converts. For speed the finer image is block-averaged
(:func:`working_pair`) and the metric samples a seeded random subset of
voxels (the same answer each run, but for the rounding of threaded sums).
SimpleITK is imported when first needed; :mod:`napari_lightfusion.align`
runs the fits.
"""

from __future__ import annotations

import math

import numpy as np

from .alignment_inputs import matrix_spacing

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


def block_average(image, target_mm: float):
    """``image`` block-averaged (BinShrink) to voxels of about ``target_mm``: never upsampled, 4 voxels wide."""
    import SimpleITK as sitk

    factors = [max(1, min(int(target_mm / s + 0.5), n // 4)) for s, n in zip(image.GetSpacing(), image.GetSize())]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def working_pair(fixed, fixed_matrix, moving, moving_matrix, stage: str):
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
    functional_finer = math.prod(matrix_spacing(moving_matrix)) < math.prod(matrix_spacing(fixed_matrix))
    pairs = [(fixed, fixed_matrix), (moving, moving_matrix)]
    (fine, fine_matrix), (coarse, coarse_matrix) = pairs[::-1] if functional_finer else pairs
    step = float(max(matrix_spacing(coarse_matrix)))
    volume = math.prod(fine.shape) * math.prod(matrix_spacing(fine_matrix))
    target = max(RESOLUTION * step / 2, (volume / WORKING_VOXELS[stage]) ** (1 / n))
    sampled = block_average(to_sitk_image(fine, fine_matrix), target)
    sampled = sitk.SmoothingRecursiveGaussian(sampled, RESOLUTION * step)
    interpolated = to_sitk_image(coarse, coarse_matrix)
    if stage == "estimate":  # a translation to within a voxel needs no finer
        interpolated = block_average(interpolated, max(sampled.GetSpacing()))
    return sampled, interpolated, functional_finer, step


def mattes_method(sampled, stage: str, step_mm: float):
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
        learningRate=step_mm,
        minStep=0.01 * step_mm,
        numberOfIterations=ITERATIONS[stage],
        relaxationFactor=0.7,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    return method


def run_registration(method, sampled, interpolated) -> None:
    """``method.Execute``, with SimpleITK's multi-line exception turned into a one-line ``ValueError``."""
    try:
        method.Execute(sampled, interpolated)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1].rsplit(": ", 1)[-1]
        raise ValueError(f"registration failed: {reason}") from None


def fit_translation(sampled, interpolated, step_mm: float, watch=None) -> np.ndarray:
    """The MI-optimal translation (SimpleITK physical space, sampled -> interpolated image), from none."""
    import SimpleITK as sitk

    transform = sitk.TranslationTransform(sampled.GetDimension())
    method = mattes_method(sampled, "estimate", step_mm)
    method.SetInitialTransform(transform, inPlace=True)
    if watch:
        watch(method, "estimate")
    run_registration(method, sampled, interpolated)
    return np.array(transform.GetOffset())


def fitted_placement(transform, ndim: int, functional_sampled: bool) -> np.ndarray:
    """The world matrix that puts the functional image in register, from a fitted SimpleITK transform."""
    point_map = world_matrix(transform, ndim)  # the sampled image's world -> the interpolated image's
    return point_map if functional_sampled else np.linalg.inv(point_map)


def mi_gain(sampled, interpolated, step_mm: float, offset) -> float:
    """Mattes MI's relative improvement at translation ``offset`` over none, on every voxel of the working pair."""
    import SimpleITK as sitk

    values = []
    for shift in (np.zeros_like(offset), offset):
        method = mattes_method(sampled, "estimate", step_mm)
        method.SetMetricSamplingStrategy(method.NONE)
        method.SetInitialTransform(sitk.TranslationTransform(sampled.GetDimension(), [float(v) for v in shift]))
        try:
            values.append(method.MetricEvaluate(sampled, interpolated))
        except RuntimeError:  # too little overlap at one of them to measure: no evidence for the shift
            return 0.0
    in_place, shifted = values  # negative MI: lower is better
    return float((in_place - shifted) / abs(in_place)) if in_place else 0.0
