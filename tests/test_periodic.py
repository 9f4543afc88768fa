"""The periodic design's CP-SAT solve on a model where a solver parameter once aborted the process."""
import subprocess
import sys

import pytest

SCRIPT = """
from elk.driver.api import compile
r = compile("tiny", mode="forward", batch=1, seq=64, designs="elk-full,periodic", placement=None, bound=None,
            chip_overrides=dict(hbm_bytes_per_s=0.3e12, compute_scale=0.75),
            design_options={"periodic": {"workers": 8, "seed": 0}})
print(r.designs["periodic"].sim.latency_cycles <= r.designs["elk-full"].sim.latency_cycles)
"""


@pytest.mark.solver
def test_periodic_eight_workers_do_not_abort():
    """OR-Tools 9.15 with repair_hint and 8 workers aborted (SIGABRT) on this layer model; a subprocess survives it."""
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().endswith("True")


def test_exact_design_starts_from_and_falls_back_to_the_placed_schedules(monkeypatch):
    """An exact design's warm start is the fastest schedule as reported (after placement); if its own result
    needs a repair that makes it slower than that, the report shows the warm start under its name."""
    import dataclasses

    import solvers.placement
    from elk.driver.api import compile

    real = solvers.placement.cost_aware_placement
    slow: dict = {}

    def placement(name, workload, schedule, *args, **kwargs):
        out, placed = real(name, workload, schedule, *args, **kwargs)
        if name == "periodic":  # pretend the periodic schedule needed a costly repair: Basic's schedule
            return slow["basic"], dataclasses.replace(placed, status="repaired")
        if name == "basic":
            slow["basic"] = out
        return out, placed

    monkeypatch.setattr(solvers.placement, "cost_aware_placement", placement)
    r = compile("tiny", batch=4, seq=128, chip="ipu-mk2", designs="basic,elk-full,periodic", bound=None,
                design_options={"periodic": {"workers": 1, "time_limit": 2}})
    periodic, full = r.designs["periodic"], r.designs["elk-full"]
    assert r.designs["basic"].sim.latency_cycles > full.sim.latency_cycles  # the pretend repair would cost
    assert periodic.warm_start_ms == pytest.approx(full.sim.latency_ms)
    assert periodic.sim.latency_cycles == full.sim.latency_cycles and periodic.sim.valid
    assert periodic.schedule.design == "periodic" and periodic.placement.design == "periodic"
    assert periodic.placement.status == full.placement.status
    assert periodic.row(None, r.chip.clock_hz)["warm_start"] == "elk-full"
