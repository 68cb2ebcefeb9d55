#!/usr/bin/env bash
# Stage B on a 2-core machine: two chains of one-worker sweeps, side by side, each resumable (run it again after a
# stop: finished trials are skipped, checkpointed ones resume). Usage, from the repository root:
#   nohup studies/why-and-ddpg/stageB-run.sh ../study/.venv/bin/dpd runs >/dev/null 2>&1 &
# DPD: the pinned worktree's dpd (d76d6b1, docs/reproduction.md section 0); RUNS: where the sweep folders live.
#   core 1: stageB-controls.yaml up to Walker2d seed 3, then seeds 8-9 on HalfCheetah
#   core 2: stageB-dpd.yaml, then stageB-controls-tail.yaml (Walker2d seeds 4-7 of the controls), then seeds 8-9 on
#           Walker2d
# stageB-controls.yaml's folder is stopped before Walker2d seed 4: once Walker2d-v5__ddpg__independent__s3 has
# started, the sweep's stop file (runs/.stopping, which a trial reads before it starts) is touched, so the trials
# after it return "not started" and stay pending there; the tail folder trains them. The report reads every folder
# (a trial pending in one folder and trained in another enters once).
set -u
DPD=$(realpath "$1"); RUNS=$(realpath "$2"); HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$RUNS"

sweep() {  # CONFIG FOLDER
  "$DPD" sweep --config "$HERE/$1" --out "$RUNS/$2" --workers 1 >> "$RUNS/$2.log" 2>&1
}

core1() {
  local last="$RUNS/why-B-controls/runs/Walker2d-v5__ddpg__independent__s3"
  if [ ! -f "$last/summary.json" ]; then
    local since="$RUNS/.stageB-core1-start"
    touch "$since"
    (  # the sweep deletes a stale stop file when it starts, before any trial: touch it only once $last has moved
      until [ -d "$last" ] && [ -n "$(find "$last" -newer "$since" -print -quit)" ]; do sleep 20; done
      touch "$RUNS/why-B-controls/runs/.stopping"
    ) &
    local watcher=$!
    sweep stageB-controls.yaml why-B-controls
    kill "$watcher" 2>/dev/null
    rm -f "$since"
  fi
  sweep stageB-seeds89-hc.yaml why-B-seeds89-hc
}

core2() {
  sweep stageB-dpd.yaml why-B-dpd
  sweep stageB-controls-tail.yaml why-B-controls-tail
  sweep stageB-seeds89-w2d.yaml why-B-seeds89-w2d
}

core1 & core2 & wait
echo "stage B chains done $(date -u +%FT%TZ)" >> "$RUNS/stageB-run.log"
