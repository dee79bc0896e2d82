import numpy as np
import pytest

from lrfinder import schedules


@pytest.mark.parametrize("mode", schedules.MODES)
def test_ladder_has_exact_endpoints_and_length(mode):
    lrs = schedules.ladder(mode, 3e-7, 7.5, 37)
    assert lrs.shape == (37,) and lrs.dtype == np.float64
    assert lrs[0] == 3e-7 and lrs[-1] == 7.5
    assert np.all(np.diff(lrs) > 0)


def test_exponential_steps_are_even_in_log_space():
    lrs = schedules.exponential(1e-6, 1.0, 61)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, 10**0.1, rtol=1e-12)


def test_linear_steps_are_even():
    lrs = schedules.linear(0.5, 2.0, 7)
    np.testing.assert_allclose(np.diff(lrs), 0.25, rtol=1e-12)


@pytest.mark.parametrize(
    ("start", "end", "n", "error", "match"),
    [
        (1e-3, 1e-1, 1, ValueError, "at least 2"),
        (1e-1, 1e-3, 10, ValueError, "smaller than end_lr"),
        (1e-3, 1e-3, 10, ValueError, "smaller than end_lr"),
        (-1.0, 1.0, 10, ValueError, "positive"),
        (0.0, 1.0, 10, ValueError, "positive"),
        (1e-3, float("inf"), 10, ValueError, "finite"),
        (1e-3, 1.0, 10.5, TypeError, "integer"),
        (1e-3, "1", 10, TypeError, "number"),
    ],
)
def test_bad_ranges_are_refused(start, end, n, error, match):
    with pytest.raises(error, match=match):
        schedules.exponential(start, end, n)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        schedules.ladder("cosine", 1e-3, 1.0, 10)
