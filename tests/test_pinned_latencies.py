"""Speed work must not change a schedule: the designs' latencies on zoo models, pinned to the printed digit.

The numbers are the ones `elk compile` prints (three decimals, ms) for decode at batch 32, KV 2048 on the
default chip, under both load models. A faster engine, a cached table or a parallel search that changes any
of them has changed the plans, not just the time it takes to find them.
"""
from __future__ import annotations

import functools

import pytest

from elk.chip import preset
from elk.graphs.zoo import build_program
from elk.simulator import simulate
from elk.workload import Workload
from solvers.schedule.designs import DESIGNS

LLAMA2_13B = {
    "fluid": {"basic": 11.271, "static": 8.342, "elk-dyn": 8.202, "elk-full": 6.996, "ideal": 6.780},
    "rigid": {"basic": 11.271, "static": 8.625, "elk-dyn": 8.215, "elk-full": 7.180, "ideal": 6.780},
}
LLAMA2_70B_ELK_FULL = {"fluid": 16.293, "rigid": 16.580}


@functools.lru_cache(maxsize=None)
def workload(model: str, load_model: str) -> Workload:
    chip = preset("ipu-pod4").with_overrides(load_model=load_model)
    return Workload.build(build_program(model, batch=32, seq=2048), chip)


def printed(workload: Workload, design: str) -> str:
    result = simulate(workload, DESIGNS[design](workload))
    assert result.valid, (design, result.violations[:2])
    return f"{result.latency_ms:.3f}"


@pytest.mark.parametrize("design", list(LLAMA2_13B["fluid"]))
def test_llama2_13b_fluid(design):
    assert printed(workload("llama2-13b", "fluid"), design) == f"{LLAMA2_13B['fluid'][design]:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("design", list(LLAMA2_13B["rigid"]))
def test_llama2_13b_rigid(design):
    assert printed(workload("llama2-13b", "rigid"), design) == f"{LLAMA2_13B['rigid'][design]:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("load_model", ["fluid", "rigid"])
def test_llama2_70b_elk_full(load_model):
    assert printed(workload("llama2-70b", load_model), "elk-full") == f"{LLAMA2_70B_ELK_FULL[load_model]:.3f}"
