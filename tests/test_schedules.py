"""Ramp-up values at given steps."""

import math

import pytest

from ns3l_tf import schedules


@pytest.mark.parametrize(
    "step, expected",
    [(0, math.exp(-5)), (25_000, math.exp(-5 * 0.25)), (50_000, 1.0), (90_000, 1.0)],
)
def test_sigmoid_rampup(step, expected):
    assert float(schedules.sigmoid_rampup(step, 50_000)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (4096, 0.25), (16384, 1.0), (20000, 1.0)])
def test_linear_rampup(step, expected):
    assert float(schedules.linear_rampup(step, 16384)) == pytest.approx(expected)


def test_no_rampup_is_one():
    assert float(schedules.sigmoid_rampup(0, 0)) == 1.0
    assert float(schedules.linear_rampup(0, 0)) == 1.0
