#!/usr/bin/env bash
# Stage B on a 2-core machine: two chains of one-worker sweeps, side by side, each resumable (run it again after a
# stop: finished trials are skipped, checkpointed ones resume). Usage, from the repository root:
#   nohup studies/why-and-ddpg/stageB-run.sh ../study/.venv/bin/dpd runs >/dev/null 2>&1 &
# DPD: the pinned worktree's dpd (d76d6b1, docs/reproduction.md section 0); RUNS: where the sweep folders live.
#   core 1: stageB-controls.yaml up to Walker2d seed 3, then stageB-controls-s7.yaml (Walker2d independent s7), then
#           seeds 8-9 on HalfCheetah
#   core 2: stageB-dpd.yaml, then stageB-controls-tail.yaml (Walker2d seeds 4-7 of the controls) up to vanilla s7,
#           then seeds 8-9 on Walker2d
# A sweep is cut short with its stop file (SWEEP/runs/.stopping, which a trial reads before it starts): once the cut's
# last trial has started, the file is touched, so the trials after it return "not started" and stay pending there;
# another folder trains them. The report reads every folder (a trial pending in one folder and trained in another
# enters once). If a sweep of the same folder is already training (a chain started by an earlier copy of this
# script), the chain waits for it instead of starting a second one.
set -u
DPD=$(realpath "$1"); RUNS=$(realpath "$2"); HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$RUNS"

sweep() {  # CONFIG FOLDER
  local running
  running=$(pgrep -f -- "sweep --config .*--out $RUNS/$2 " || true)
  if [ -n "$running" ]; then  # attach: wait for the sweep already training this folder
    while kill -0 $running 2>/dev/null; do sleep 30; done
    return
  fi
  "$DPD" sweep --config "$HERE/$1" --out "$RUNS/$2" --workers 1 >> "$RUNS/$2.log" 2>&1
}

sweep_until() {  # CONFIG FOLDER LAST_TRIAL: sweep FOLDER, starting no trial after LAST_TRIAL
  local last="$RUNS/$2/runs/$3" since="$RUNS/.stageB-$2-start"
  touch "$since"
  (  # the sweep deletes a stale stop file when it starts, before any trial: touch it only once $last has moved
    until [ -d "$last" ] && [ -n "$(find "$last" -newer "$since" -print -quit)" ]; do sleep 20; done
    touch "$RUNS/$2/runs/.stopping"
  ) &
  local watcher=$!
  sweep "$1" "$2"
  kill "$watcher" 2>/dev/null
  rm -f "$since"
}

W2D_I7=Walker2d-v5__ddpg__independent__s7  # the tail's last trial: core 1 trains it, in why-B-controls-s7

core1() {
  local cut=Walker2d-v5__ddpg__independent__s3  # stageB-controls.yaml's last trial here; the tail trains the rest
  if [ ! -f "$RUNS/why-B-controls/runs/$cut/summary.json" ]; then
    sweep_until stageB-controls.yaml why-B-controls "$cut"
  fi
  if [ ! -d "$RUNS/why-B-controls-tail/runs/$W2D_I7" ]; then  # not started in the tail by an earlier split
    sweep stageB-controls-s7.yaml why-B-controls-s7
  fi
  sweep stageB-seeds89-hc.yaml why-B-seeds89-hc
}

core2() {
  sweep stageB-dpd.yaml why-B-dpd
  local tail="$RUNS/why-B-controls-tail/runs" cut=Walker2d-v5__ddpg__vanilla__s7  # the tail's last trial here
  if [ -d "$tail/$W2D_I7" ] || [ ! -f "$tail/$cut/summary.json" ]; then
    sweep_until stageB-controls-tail.yaml why-B-controls-tail "$cut"
  fi
  sweep stageB-seeds89-w2d.yaml why-B-seeds89-w2d
}

core1 & core2 & wait
echo "stage B chains done $(date -u +%FT%TZ)" >> "$RUNS/stageB-run.log"
