#!/usr/bin/env bash
# Start a real Dask cluster on this machine (a `dask scheduler` and a `dask worker` with two worker
# processes, all on 127.0.0.1), run a small `elk sweep` through it with the same command a user would
# type plus --address, check that a rerun computes nothing, and stop the cluster.
# Used by .ci/run; needs the `cluster` extra (pip install -e ".[cluster]").
set -euo pipefail

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

dask scheduler --host 127.0.0.1 --port 0 --no-dashboard --scheduler-file "$work/scheduler.json" \
    >"$work/scheduler.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/scheduler.json" ] && break; sleep 0.2; done
address="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["address"])' "$work/scheduler.json")"
dask worker --scheduler-file "$work/scheduler.json" --nworkers 2 --nthreads 1 --no-dashboard \
    >"$work/worker.log" 2>&1 &
pids+=($!)
python - "$address" <<'EOF'
import sys
from distributed import Client
with Client(sys.argv[1], timeout="60s") as client:
    client.wait_for_workers(2, timeout=60)
    print(f"dask cluster at {sys.argv[1]}: {len(client.scheduler_info()['workers'])} workers")
EOF

sweep=(elk sweep --model tiny --batch 4 --seq 128 --chip ipu-mk2 --vary hbm_tbps=4:12:4
       --vary topology=all-to-all,mesh --out "$work/out" --address "$address" --quiet)
"${sweep[@]}" | tee "$work/first.txt"
grep -q "6 points (6 run now, 0 already done)" "$work/first.txt"
"${sweep[@]}" | tee "$work/second.txt"
grep -q "6 points (0 run now, 6 already done)" "$work/second.txt"
echo "dask cluster study: ok"
