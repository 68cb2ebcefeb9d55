#!/usr/bin/env bash
# Stage A's calibration: `dpd calibrate` (N=200 states, K=16 rollouts raised to 64 where under half are resolved:
# RULES.md) on every finished run of the given sweep folders that has no calibration yet, JOBS at a time.
# The PPO half ran with STATES=50 (RULES.md, third deviation).
#   DPD=../calib/.venv/bin/dpd JOBS=2 studies/why-and-ddpg/calibrate.sh runs/why-A-ddpg
#   DPD=../calib/.venv/bin/dpd JOBS=2 STATES=50 studies/why-and-ddpg/calibrate.sh runs/why-A-ppo
# Resumable: a run whose calibration/calibration.json exists is skipped (the json is written last).
set -euo pipefail
dpd=${DPD:-.venv/bin/dpd}
jobs=${JOBS:-2}
states=${STATES:-200}
for sweep in "$@"; do
  for run in "$sweep"/runs/*/; do
    run=${run%/}
    [ -f "$run/summary.json" ] || { echo "calibrate: $run not finished, skipped" >&2; continue; }
    [ -f "$run/calibration/calibration.json" ] && continue
    echo "$run"
  done
done | xargs -r -P "$jobs" -I{} sh -c "echo \"calibrate: {} (\$(date -u +%FT%TZ))\"; \
  OMP_NUM_THREADS=1 '$dpd' calibrate '{}' --states $states --rollouts 16 --max-rollouts 64 > '{}/calibrate.log' 2>&1 \
  && echo \"calibrate: {} done (\$(date -u +%FT%TZ))\" || echo \"calibrate: {} FAILED, see {}/calibrate.log\""
