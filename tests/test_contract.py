"""What every trainer promises, checked the same way for each backend (see tests/cases.py)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

from lrfinder import RangeTestInterrupted, find_lr
from lrfinder.trainers import BACKENDS, TrainerBackend, load_backend
from tests.cases import CASES, Boom, require

FAST = {"num_iter": 20, "start_lr": 1e-4, "end_lr": 1e-1, "progress": False}


@pytest.fixture(params=sorted(CASES))
def build(request):
    return CASES[request.param]


def assert_same_state(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        a, b = np.asarray(before[key]), np.asarray(after[key])
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert a.tobytes() == b.tobytes(), f"{key} changed"  # bit for bit, NaN-safe


def test_state_restored_after_success(build):
    setup = build()
    before = setup.state()
    result = find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert result.num_steps == FAST["num_iter"]
    assert_same_state(before, setup.state())


@pytest.mark.parametrize("fail_at", [0, 7])
def test_state_restored_after_exception_mid_sweep(build, fail_at):
    setup = build(fail_at=fail_at)
    before = setup.state()
    with pytest.raises(Boom):
        find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert_same_state(before, setup.state())


def test_state_restored_after_keyboard_interrupt(build):
    setup = build(fail_at=7, fail_with=KeyboardInterrupt)
    before = setup.state()
    with pytest.raises(RangeTestInterrupted) as info:
        find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    result = info.value.result
    assert result.stop_reason == "interrupted"
    assert result.num_steps == 7
    assert_same_state(before, setup.state())


def test_first_recorded_loss_is_the_first_batch_loss(build):
    setup = build()
    expected = setup.first_loss()
    result = find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert result.losses[0] == pytest.approx(expected, rel=1e-5)


def test_a_diverging_run_stops_early(build):
    setup = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = find_lr(setup.model, setup.data, **setup.kwargs, start_lr=1e-3, end_lr=1e4,
                         num_iter=200, progress=False)
    assert result.stop_reason in ("diverged", "non_finite")
    assert result.num_steps < 200


def test_short_data_is_cycled(build):
    setup = build(n_batches=3)
    result = find_lr(setup.model, setup.data, **setup.kwargs, **FAST)
    assert result.num_steps == FAST["num_iter"]
    assert np.all(np.isfinite(result.losses))


@pytest.mark.parametrize(("framework", "module_name"), BACKENDS)
def test_every_backend_module_follows_the_backend_protocol(framework, module_name):
    require(framework)
    backend = load_backend(module_name)
    assert isinstance(backend, TrainerBackend)
    keywords = {name for name, p in inspect.signature(find_lr).parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert backend.OPTIONS and backend.OPTIONS.issubset(keywords | {"optimizer", "criterion"})
    assert backend.accepts(object()) is False


def test_a_module_that_is_no_backend_is_refused_by_name():
    with pytest.raises(TypeError, match=r"lrfinder.trainers.step_fn is not a trainer backend: it lacks "
                                        r"OPTIONS, accepts, make"):
        load_backend("lrfinder.trainers.step_fn")
