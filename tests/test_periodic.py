"""The periodic design's CP-SAT solve on a model where a solver parameter once aborted the process."""
import subprocess
import sys

import pytest

SCRIPT = """
from elk.driver.api import compile
r = compile("tiny", mode="train", batch=1, seq=64, designs="elk-full,periodic", placement=None, bound=None,
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
