"""The typed run plan: exact-design options checked when made, order and warm starts decided before any work,
one "keep the faster of new and warm" rule, worker counts passed as arguments."""
from __future__ import annotations

import os

import numpy as np
import pytest

from elk.chip import resolve_chip
from elk.errors import ElkError, SolverConfigError
from elk.graphs.zoo import build_program
from elk.schedule import Provenance
from elk.simulator import simulate
from elk.workload import Workload
from solvers.registry import EXACT, PAPER_DESIGNS, RunPlan, parse_designs
from solvers.schedule.designs import elk_dyn, static
from solvers.schedule.fallback import keep_faster
from solvers.solver_options import CpsatOptions, ExactOptions, MilpOptions, PeriodicOptions


@pytest.fixture(scope="module")
def tiny():
    workload = Workload.build(build_program("tiny", batch=4, seq=128), resolve_chip("ipu-mk2"))
    return workload, elk_dyn(workload)


# ------------------------------------------------------------------ options: one dataclass per kind, checked once
@pytest.mark.parametrize("kind, fields, message", [
    (PeriodicOptions, {"time_limit": 0}, "time limit"),
    (PeriodicOptions, {"time_limit": float("inf")}, "time limit"),
    (PeriodicOptions, {"workers": 0}, "workers"),
    (PeriodicOptions, {"workers": True}, "workers"),
    (PeriodicOptions, {"seed": -1}, "seed"),
    (PeriodicOptions, {"deterministic_time": 0}, "deterministic time"),
    (CpsatOptions, {"window": 0}, "window size"),
    (CpsatOptions, {"window": 4, "stride": 5}, "stride"),
    (CpsatOptions, {"params": {"num_search_wokers": 2}}, "unknown CP-SAT parameter"),
    (MilpOptions, {"backend": "glpk"}, "unknown MILP backend"),
])
def test_bad_option_values_fail_when_the_options_are_made(kind, fields, message):
    with pytest.raises(SolverConfigError, match=message):
        kind(**fields)


def test_every_exact_kind_is_a_frozen_options_dataclass_with_defaults():
    for name, kind in EXACT.items():
        options = kind.options()
        assert isinstance(options, ExactOptions), name
        with pytest.raises(AttributeError):
            options.time_limit = 1.0  # frozen: checked once, never changed after
    assert PeriodicOptions().workers == 8 and CpsatOptions().workers == 2 and MilpOptions().backend == "highs"


def test_knobs_a_kind_has_no_field_for_do_not_reach_it():
    assert PeriodicOptions.from_knobs(window=4, backend="cbc", time_limit=3.0, workers=None) == \
        PeriodicOptions(time_limit=3.0)
    assert MilpOptions.from_knobs(window=4, backend="cbc").backend == "cbc"


# ------------------------------------------------------------------ the plan: built once, before any work
def test_mappings_and_dataclasses_give_the_same_plan():
    by_mapping = RunPlan.build("elk-dyn,cpsat", {"cpsat": {"window": 4, "workers": 1}})
    by_type = RunPlan.build("elk-dyn,cpsat", {"cpsat": CpsatOptions(window=4, workers=1)})
    assert by_mapping == by_type
    assert by_mapping.exact["cpsat"] == CpsatOptions(window=4, workers=1)


def test_an_unknown_option_names_what_the_design_accepts():
    with pytest.raises(SolverConfigError, match="no option.*windw.*its options:.*window"):
        RunPlan.build("cpsat", {"cpsat": {"windw": 4}})
    with pytest.raises(SolverConfigError, match="takes CpsatOptions"):
        RunPlan.build("cpsat", {"cpsat": MilpOptions()})
    with pytest.raises(SolverConfigError, match="unknown design 'cpsta'"):
        RunPlan.build("cpsat", {"cpsta": {}})


def test_order_adds_what_the_designs_need():
    # an exact design alone starts from ELK-Full (run, with its ELK-Dyn, but not reported)
    plan = RunPlan.build("cpsat")
    assert plan.requested == ("cpsat",) and plan.order == ("elk-dyn", "elk-full", "cpsat")
    # a named warm start runs first; then nothing else is needed
    plan = RunPlan.build("periodic", {"periodic": {"warm_start": "static"}})
    assert plan.order == ("static", "periodic") and plan.warm_starts == {"periodic": "static"}
    # exact designs run in registry order whatever the request order
    assert RunPlan.build("milp,elk-dyn,periodic").order == ("elk-dyn", "periodic", "milp")


def test_one_warm_start_for_every_exact_design_reaches_only_those_after_it():
    plan = RunPlan.build("elk-dyn,periodic,cpsat,milp", warm_start="cpsat")
    assert plan.warm_starts == {"periodic": None, "cpsat": None, "milp": "cpsat"}
    plan = RunPlan.build("elk-dyn,periodic,cpsat", warm_start="elk-dyn")
    assert plan.warm_starts == {"periodic": "elk-dyn", "cpsat": "elk-dyn"}
    with pytest.raises(SolverConfigError, match="no other exact design runs after it"):
        RunPlan.build("elk-dyn,cpsat", warm_start="cpsat")
    with pytest.raises(SolverConfigError, match="relaxed"):
        RunPlan.build("ideal,cpsat", warm_start="ideal")
    with pytest.raises(SolverConfigError, match="relaxed"):
        RunPlan.build("cpsat", {"cpsat": {"warm_start": "ideal"}})


def test_set_names_say_what_they_hold():
    assert parse_designs("paper") == list(PAPER_DESIGNS) == parse_designs("all")  # "all": the older name
    assert parse_designs("default") == [*PAPER_DESIGNS, "periodic"]
    with pytest.raises(ElkError, match="'all' = 'paper'"):
        parse_designs("everything")


def test_compile_checks_the_plan_before_building_tables(monkeypatch):
    import elk
    import elk.driver.api

    def no_tables(*args, **kwargs):
        raise AssertionError("plan tables were built before the mistake was found")

    monkeypatch.setattr(elk.driver.api.Workload, "build", no_tables)
    for options, message in (({"periodic": {"seed": -2}}, "seed"), ({"periodic": {"window": 4}}, "no option")):
        with pytest.raises(SolverConfigError, match=message):
            elk.compile("tiny", designs="periodic", design_options=options)
    with pytest.raises(SolverConfigError, match="one or the other"):
        elk.compile("tiny", designs=RunPlan.build("periodic"), design_options={"periodic": {}})


# ------------------------------------------------------------------ one fallback rule, one renaming
def test_keep_faster_keeps_the_warm_start_unless_the_new_schedule_is_valid_and_not_slower(tiny):
    workload, warm = tiny
    slower = warm.shifted(0.0)
    slower.exec_start[-1] += 1000.0
    slower.exec_end[-1] += 1000.0
    assert simulate(workload, slower).valid
    assert keep_faster(workload, slower, warm) == (warm, "slower than the warm start")
    broken = warm.shifted(0.0)
    broken.exec_end = broken.exec_start.copy()
    kept, reason = keep_faster(workload, broken, warm)
    assert kept is warm and reason.startswith("invalid: rule")
    assert keep_faster(workload, None, warm) == (warm, "no schedule")
    same = warm.shifted(5.0)  # as fast: a window search keeps it, a design that must gain something does not
    assert keep_faster(workload, same, warm)[0] is same
    assert keep_faster(workload, same, warm, tie="warm") == (warm, "no faster")


def test_renamed_copies_the_decisions_under_another_name(tiny):
    _, warm = tiny
    info = Provenance(kept_warm_start="why")
    out = warm.renamed("cpsat", info)
    assert out.design == "cpsat" and out.info is info and out.relaxation == warm.relaxation
    for name in ("entry", "exec_start", "exec_end", "load_start", "load_end"):
        assert np.array_equal(getattr(out, name), getattr(warm, name))
        assert getattr(out, name) is not getattr(warm, name)
    assert warm.renamed("x").info == warm.info and warm.renamed("x").info is not warm.info


# ------------------------------------------------------------------ worker counts are arguments
def test_worker_counts_are_passed_not_set_in_the_environment(tiny, monkeypatch):
    workload, _ = tiny
    monkeypatch.delenv("ELK_WORKERS", raising=False)
    one = static(workload, workers=1)
    assert simulate(workload, one).latency_cycles == simulate(workload, static(workload)).latency_cycles
    from elk.study import Point
    from elk.study.execute import execute_point
    record = execute_point(Point(model="tiny", batch=4, seq=128, chip="ipu-mk2", designs="elk-dyn", bound="closed"),
                           table_workers=1)
    assert record["status"] == "ok", record.get("error")
    assert "ELK_WORKERS" not in os.environ
