"""A sweep on a many-core machine without the CLI's extra dependencies (typer, ray).

    PYTHONPATH=src python studies/device_sweep.py OUT ENVS TOTAL_STEPS SEEDS WORKERS [key=value ...]
    PYTHONPATH=src python studies/device_sweep.py --config SWEEP.yaml OUT WORKERS

The first form (used for the 150k-step reproduction) runs dpd vs vanilla PPO (zoo preset) on ENVS (comma-separated,
slowest first: its trials start first), exactly as ``dpd sweep --env ... --total-steps TOTAL_STEPS --seeds SEEDS
--workers WORKERS --set tensorboard=false --set ... --out OUT`` would. The second runs a sweep YAML exactly as
``dpd sweep --config SWEEP.yaml --out OUT --workers WORKERS`` does (same folder, same trials: the parts add up).
Both go through ``dpd.experiments.sweep.run_sweep``. A SIGTERM (e.g. from ``timeout``) makes every running trial
checkpoint and stop; running the same command again, here or with ``dpd sweep``, resumes them.
"""

import sys
import time

from dpd.experiments.sweep import SweepSpec, run_sweep
from dpd.run_files import read_yaml

if __name__ == "__main__":
    if sys.argv[1:2] == ["--config"]:
        config, out, workers = sys.argv[2:5]
        spec = SweepSpec.from_dict(read_yaml(config))
    else:
        out, envs, total, seeds, workers, *overrides = sys.argv[1:]
        spec = SweepSpec(envs=envs.split(","), total_steps=int(total), seeds=list(range(int(seeds))),
                         overrides=["tensorboard=false", *overrides])
    start = time.time()
    shown = [-1e9, -1]  # when the last line was printed, and its count of finished runs

    def show(s: dict) -> None:
        """A line every 30 s, and whenever a run finishes (the pool calls this about every second)."""
        if time.time() - shown[0] >= 30 or s["done"] != shown[1]:
            shown[:] = [time.time(), s["done"]]
            print(f"{time.time() - start:6.0f}s {s['done']}/{s['total']} done, {len(s['running'])} running, "
                  f"{s['failed']} failed; running at steps {sorted(s['running'].values())}", flush=True)

    result = run_sweep(spec, out, workers=int(workers), on_update=show)
    print(result.as_dict(), f"{time.time() - start:.0f}s", flush=True)
