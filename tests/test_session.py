"""The dock's session model without a display: evented fields, the job queue, and a fusion end to end.

A :class:`FusionSession` is driven as the widget drives it, with napari's
``ViewerModel`` (no canvas, no Qt) and the jobs run in this thread: a
request made from the session, the job run to its end, its outcome written
back into the viewer.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_lightfusion import fuse
from napari_lightfusion.generators import run_to_end
from napari_lightfusion.session import requests, results
from napari_lightfusion.session.jobs import PlanCache, run_lazy, run_request
from napari_lightfusion.session.model import CANCELLED, CHANGED, READY, FusionSession, JobKind
from napari_lightfusion.session.outputs import MapChoice

MAP_ROLES = {"backdrop", "surprise:0", "surprise:1", "attention:0", "attention:1"}


def recorder(signal) -> list:
    """Every value ``signal`` emits from now on (the first argument of each emission)."""
    seen = []
    signal.connect(lambda value, *_: seen.append(value))
    return seen


@pytest.fixture
def dock(colour_pair):
    """A headless viewer with an MRI and a PET, and a session with the pair picked."""
    viewer = ViewerModel()
    mri = viewer.add_image(colour_pair[0], name="MRI")
    pet = viewer.add_image(colour_pair[1], name="PET")
    session = FusionSession(preset="CT-MRI")
    session.pair = (mri, pet)
    return viewer, session


def run(viewer, session: FusionSession, kind: JobKind, cache: PlanCache | None = None):
    """Run a job of ``kind`` as the widget does, in this thread: request, job, outcome written."""
    request = requests.make_request(viewer, session, kind, clicked=0.0)
    assert request is not None
    outcome = run_lazy(request) if request.origin.lazy else run_to_end(run_request(request, cache or PlanCache()))
    assert outcome.error is None, outcome.error
    results.complete(viewer, session, outcome)
    return outcome


def test_fields_are_events_and_notices_are_not_repeated():
    session = FusionSession()
    statuses, kinds, notes = recorder(session.events.status), recorder(session.events.job), []
    session.notice.connect(lambda kind, message: notes.append((kind, message)))
    assert session.status == READY and session.result is None and session.job is None
    session.status = "x"
    session.status = "x"  # unchanged: no event
    session.started(JobKind.FUSE, text="Fusing the image")
    session.say("warning", "look")
    session.say("warning", "look")
    session.forget_note()
    session.say("warning", "look")
    assert statuses == ["x", "Fusing the image ..."] and kinds == [JobKind.FUSE]
    assert notes == [("warning", "look")] * 2


def test_one_job_runs_and_the_newest_request_waits():
    session = FusionSession()
    assert not session.busy and session.queue(JobKind.FUSE, 1.0)
    session.started(JobKind.FUSE)
    assert session.busy
    assert not session.queue(JobKind.LIVE, 2.0)
    assert not session.queue(JobKind.COMPARE, 3.0)  # replaces the waiting Live refresh
    assert not session.queue(JobKind.LIVE, 4.0)  # a Live refresh never pushes out a fusion asked for
    assert not session.queue(JobKind.WARM_UP, 5.0)  # nor does a warm-up (it is asked again later)
    assert session.finished() == (JobKind.COMPARE, 3.0) and session.job is None
    assert session.finished() is None and not session.busy


def test_cancel_drops_the_waiting_job_and_says_why_but_a_warm_up_runs_on():
    session = FusionSession()
    session.started(JobKind.WARM_UP)
    session.queue(JobKind.FUSE, 1.0)
    assert not session.cancel() and session.finished() is None  # nothing to stop; the waiting Fuse is gone
    session.started(JobKind.FUSE)
    assert session.cancel("'PET' was removed") and session.status == "'PET' was removed"
    session.stale()  # a change while the cancel is said does not overwrite it
    assert session.status == "'PET' was removed"
    session.aborted()
    assert session.status == "'PET' was removed"
    session.finished()
    session.started(JobKind.FUSE)
    session.cancel()
    assert session.status == CANCELLED


def test_a_picked_pair_guesses_the_preset_and_loads_its_network(colour_pair):
    viewer = ViewerModel()
    mri = viewer.add_image(colour_pair[0], name="MRI")
    pet = viewer.add_image(colour_pair[1][::2, ::2].copy(), name="PET", scale=(2.0, 2.0))
    session = FusionSession(preset="CT-MRI", balance=0.5)
    wanted = recorder(session.wanted)
    session.pair = (mri, pet)
    assert session.preset == "PET-MRI" and session.balance is None  # until its network says its default
    assert wanted == [JobKind.WARM_UP, JobKind.LIVE]
    assert "Fuse resamples it onto the grid of 'MRI'" in session.grid_note and session.grid_note in session.status
    session.warmed("CT-MRI", 0.3)  # the warm-up of a preset no longer picked is ignored
    assert session.warm_needed and session.balance is None
    session.warmed("PET-MRI", 0.3)
    assert not session.warm_needed and session.balance == 0.3 and session.moved_balance() is None
    session.balance = 0.8
    assert session.moved_balance() == 0.8 and session.requested_balance() == 0.8
    session.auto_balance = True  # each fusion chooses b: asked for, and named, as "auto"
    assert session.requested_balance() == "auto" and session.moved_balance() == "auto"
    session.balance = None  # a network that takes none: auto does not apply
    assert session.requested_balance() is None and session.moved_balance() is None


def test_an_input_change_makes_the_result_stale_and_asks_live_to_refuse(dock):
    viewer, session = dock
    run(viewer, session, JobKind.FUSE)
    wanted, version = recorder(session.wanted), session.version
    assert session.metrics
    session.pair[0].contrast_limits = (10, 100)
    assert session.version > version and session.metrics == {} and session.status == CHANGED
    assert wanted == [JobKind.LIVE]
    session.pair = (None, None)  # the pair is no longer watched
    session.version = version
    viewer.layers["MRI"].contrast_limits = (0, 50)
    assert session.version == version


def test_a_fusion_writes_its_result_and_the_status_says_how_it_went(dock, colour_pair):
    viewer, session = dock
    seen = recorder(session.events.result)
    outcome = run(viewer, session, JobKind.FUSE)
    result = session.result
    assert seen[-1] is result and result.origin.kind is JobKind.FUSE and result.index is None
    assert set(result.layers) == {"fused"} and not result.maps  # no map on show: none computed
    assert [ly for ly in viewer.layers if ly.visible][-1] is result.layers["fused"]
    want = fuse(*colour_pair, "PET-MRI", "auto", a_limits=tuple(session.pair[0].contrast_limits))
    np.testing.assert_allclose(result.layers["fused"].data, want.fused, atol=1e-6)
    assert session.metrics is outcome.table and "LightFusionNet" in session.metrics
    assert session.status.startswith("Fused the image with PET-MRI") and session.status.endswith("s).")
    assert result.weighted and not result.whole_volume


def test_a_map_picked_after_a_fusion_without_maps_is_computed_then(dock):
    viewer, session = dock
    cache = PlanCache()
    run(viewer, session, JobKind.FUSE, cache)
    assert not session.maps_missing()  # no map on show: nothing missing
    session.map_choice = MapChoice("attention", 1)
    assert session.maps_missing()
    request = requests.make_request(viewer, session, JobKind.MAPS, clicked=0.0)
    assert request.maps and request.index is None and not request.check_alignment
    run(viewer, session, JobKind.MAPS, cache)
    layers = session.result.layers
    assert MAP_ROLES | {"fused", "weight"} <= set(layers) and session.result.maps and not session.maps_missing()
    assert layers["attention:1"].visible and layers["backdrop"].visible and not layers["fused"].visible
    assert np.isfinite(layers["attention:1"].data).any()
    session.channel = 3  # the maps on show are of the mean: another channel needs them again
    assert session.maps_missing()
    assert results.show_kept_channel(viewer, session) and not session.maps_missing()  # from the kept maps
    assert "channel 3" in session.status


def test_a_map_picked_while_a_fusion_runs_leaves_the_fused_image_shown_until_its_maps_come(dock):
    viewer, session = dock
    request = requests.make_request(viewer, session, JobKind.FUSE, clicked=0.0)
    outcome = run_to_end(run_request(request, PlanCache()))
    session.map_choice = MapChoice("attention", 0)  # picked while it ran: the job computed no maps
    results.complete(viewer, session, outcome)
    assert session.result.layers["fused"].visible and session.maps_missing()


def test_live_fuses_the_slice_on_view_with_maps_only_while_one_is_shown(stack_pair):
    viewer = ViewerModel()
    mri = viewer.add_image(stack_pair[0], name="mri stack")
    pet = viewer.add_image(stack_pair[1], name="pet stack", rgb=True)
    session = FusionSession(preset="PET-MRI")
    session.pair = (mri, pet)
    viewer.dims.set_current_step(0, 2)
    cache = PlanCache()
    run(viewer, session, JobKind.LIVE, cache)
    assert session.result.index == 2 and set(session.result.layers) == {"fused"}
    assert session.result.layers["fused"].data.shape == (5, 48, 48, 3)
    session.map_choice = MapChoice("surprise", 0)
    assert requests.make_request(viewer, session, JobKind.MAPS, clicked=0.0).index == 2  # that slice again
    run(viewer, session, JobKind.LIVE, cache)
    assert session.result.maps and np.isfinite(session.result.layers["surprise:0"].data[2]).any()


def test_a_comparison_keeps_its_baselines_when_a_map_is_computed_later(dock):
    viewer, session = dock
    session.baselines = ("laplacian",)
    outcome = run(viewer, session, JobKind.COMPARE)
    tiles = results.write_baselines(viewer, session, outcome)
    assert [ly.name for ly in tiles] == ["MRI", "PET", "MRI + PET · PET-MRI", "laplacian · MRI + PET"]
    assert "baseline:laplacian" in session.result.layers
    session.map_choice = MapChoice("surprise", 1)
    run(viewer, session, JobKind.MAPS)
    assert {"baseline:laplacian", "surprise:1"} <= set(session.result.layers)


def test_a_pair_that_cannot_be_fused_is_said_not_requested(colour_pair, stack_pair):
    viewer = ViewerModel()
    session = FusionSession(preset="PET-MRI")
    notes = []
    session.notice.connect(lambda kind, message: notes.append((kind, message)))
    assert requests.make_request(viewer, session, JobKind.LIVE, 0.0) is None and not notes  # Live: quietly
    assert requests.make_request(viewer, session, JobKind.FUSE, 0.0) is None
    assert notes == [("warning", "pick two different image layers to fuse")]
    session.pair = (viewer.add_image(colour_pair[0], name="MRI"), viewer.add_image(stack_pair[1], name="PET", rgb=True))
    assert "2D" in session.status and "3D" in session.status
    assert requests.make_request(viewer, session, JobKind.FUSE, 0.0) is None and notes[-1][0] == "error"
