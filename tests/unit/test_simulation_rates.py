"""The simulator's rates are options: validated, and the simulation follows them.

No database: ``plan_instances`` calibrates on a dry run of the simulation
itself, so the rates it is given show in how many instances it plans.
"""

from __future__ import annotations

import dataclasses

import pytest

from actionhost_backfill.errors import BadInput
from actionhost_backfill.sim.simulate import Rates, SimulationOptions, plan_instances


@pytest.mark.parametrize(
    ("rates", "named"),
    [
        (Rates(build_fails=1.5), "rates.build_fails must be between 0 and 1"),
        (Rates(evacuation_no_host=-0.1), "rates.evacuation_no_host must be between 0 and 1"),
        (Rates(mean_gap=0), "rates.mean_gap must be at least 1 second"),
        (Rates(operation_mix=(0.5, 0.5, 0.5, 0.0, 0.0)), "rates.operation_mix must be five"),
        (Rates(operation_mix=(0.5, 0.5)), "rates.operation_mix must be five"),
    ],
)
def test_rates_out_of_range_are_refused(rates, named):
    with pytest.raises(BadInput, match=named):
        SimulationOptions(rates=rates).validate()


def test_default_rates_are_valid():
    SimulationOptions().validate()


def test_the_simulation_follows_its_rates():
    """Operations three times as often: more events per instance, fewer instances planned."""
    usual = SimulationOptions(seed=3, events=20_000, days=200)
    planned = plan_instances(usual)
    busy = dataclasses.replace(usual, rates=Rates(mean_gap=Rates().mean_gap // 3))
    assert plan_instances(busy) < planned * 0.6
    assert plan_instances(dataclasses.replace(usual, rates=Rates())) == planned
