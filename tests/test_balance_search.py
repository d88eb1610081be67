"""``balance="auto"``: the b chosen for the user's own pair (napari_lightfusion.balance_search).

The choice is checked against the evaluator's own measures, computed the
other way round: each b's fused image through ``fuse`` and
``metrics.hot_spot_scores`` on its colour output, pixel average through
``baselines.fuse_baseline``.
"""

import json

import dask.array as da
import numpy as np
import pytest

from napari_lightfusion import fuse
from napari_lightfusion.balance_search import AUTO, sample_slices
from napari_lightfusion.baselines import fuse_baseline
from napari_lightfusion.fusion import plan_fusion
from napari_lightfusion.lazy import fuse_lazy
from napari_lightfusion.metrics import hot_spot, hot_spot_scores
from napari_lightfusion.model import LightFusionNet
from napari_lightfusion.pair_data import load_pairs, pair_names
from napari_lightfusion.weights import save_weights


def _leads(fused, mri, pet) -> np.ndarray:
    """(anatomy, function) lead of ``fused`` over pixel average in the hot spot, as the evaluator scores them.

    ``mri`` and ``pet`` in [0, 1], as ``load_pairs`` gives them.
    """
    net = hot_spot_scores(fused * 255.0, mri * 255.0, pet * 255.0)
    avg = hot_spot_scores(fuse_baseline("average", mri, pet) * 255.0, mri * 255.0, pet * 255.0)
    return np.array([net[k] - avg[k] for k in net])


@pytest.fixture(scope="module")
def harvard_pet(harvard_root):
    """Two Harvard PET-MRI test pairs: a T1 one (11) and a T2 one (32), which need opposite b."""
    names = [n for n in pair_names(harvard_root, "test", "PET-MRI") if n in ("11.png", "32.png")]
    return load_pairs(harvard_root, "test", "PET-MRI", names)


def test_the_chosen_b_keeps_both_measures_at_least_as_well_as_any_tenth(harvard_pet):
    for pair in harvard_pet:
        result = fuse(pair.anatomical, pair.other, "PET-MRI", "cpu", balance=AUTO)
        choice = result.balance_choice
        assert choice.reason is None and 0.0 <= choice.balance <= 1.0
        chosen = _leads(result.fused, pair.anatomical, pair.other)
        # the leads it reports are the evaluator's (its search scores the fused luma, the evaluator the RGB's)
        np.testing.assert_allclose(chosen, [choice.anatomy_lead, choice.function_lead], atol=2e-3)
        again = fuse(pair.anatomical, pair.other, "PET-MRI", "cpu", balance=choice.balance).fused
        np.testing.assert_array_equal(result.fused, again)
        for b in np.linspace(0.0, 1.0, 11):
            fused = fuse(pair.anatomical, pair.other, "PET-MRI", "cpu", balance=b).fused
            other = _leads(fused, pair.anatomical, pair.other)
            assert chosen.min() >= other.min() - 2e-3, (pair.name, b, chosen, other)
    bs = [fuse(p.anatomical, p.other, "PET-MRI", "cpu", balance=AUTO).balance_choice.balance for p in harvard_pet]
    assert bs[0] != bs[1]  # a T1 and a T2 MRI under PET get their own b


def test_a_network_without_a_balance_or_a_pair_without_a_hot_spot_says_why(tmp_path):
    mri = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    path = tmp_path / "paper.pt"
    save_weights(LightFusionNet().eval(), path, {"dataset": "test"})
    plain = fuse(mri, mri[::-1], weights=path, balance=AUTO).balance_choice
    assert plain.balance is None and plain.describe() == "balance: the network takes none"
    dark = fuse(mri, np.zeros((64, 64, 3), np.uint8), "PET-MRI", "cpu", balance=AUTO).balance_choice
    default = plan_fusion(mri, mri, "PET-MRI").model.config.balance
    assert dark.balance == default and "no hot spot" in dark.describe()
    assert np.isnan(dark.anatomy_lead) and dark.record()["anatomy_lead"] is None
    json.dumps(dark.record())  # plain values, for a sidecar


def test_a_stack_gets_one_b_chosen_on_its_largest_hot_spots(colour_stack):
    mri, pet = colour_stack
    pair = plan_fusion(mri, pet, "PET-MRI", "cpu").pair
    sizes = [int(hot_spot(f * 255.0, a * 255.0).sum()) for a, f in zip(pair.anatomical, pair.functional)]
    picked = sample_slices(pair.anatomical, pair.functional, count=2)
    assert sizes[0] == 0 and picked == sorted(np.argsort(sizes)[-2:].tolist())  # the two largest, in order
    result = fuse(mri, pet, "PET-MRI", "cpu", balance=AUTO)
    choice = result.balance_choice
    assert len(choice.slices) == min(5, len(mri) - 1) and 0 not in choice.slices
    np.testing.assert_array_equal(result.fused, fuse(mri, pet, "PET-MRI", "cpu", balance=choice.balance).fused)
    a, b = da.from_array(mri, chunks=(1, -1, -1)), da.from_array(pet, chunks=(1, -1, -1, -1))
    lazy = fuse_lazy(a, b, "PET-MRI", "cpu", balance=AUTO)
    assert lazy.balance_choice.balance == choice.balance  # a lazy stack this small is looked at whole
    np.testing.assert_array_equal(np.asarray(lazy.fused), result.fused)


@pytest.fixture
def colour_stack(harvard_root):
    """Seven Harvard PET-MRI test pairs as a stack, slice 0 with its PET blacked out."""
    pairs = load_pairs(harvard_root, "test", "PET-MRI", pair_names(harvard_root, "test", "PET-MRI")[:7])
    mri = np.stack([p.anatomical for p in pairs])
    pet = np.stack([p.other for p in pairs])
    pet[0] = 0
    return mri, pet


@pytest.mark.parametrize("bad", ["autox", -0.1, 1.5, "nan"])
def test_a_bad_balance_names_auto_too(bad):
    grey = np.zeros((16, 16))
    with pytest.raises(ValueError, match="^balance must .* or 'auto'"):
        fuse(grey, grey, balance=bad)
