"""A sweep on a many-core machine without the CLI's extra dependencies (used for the reproduction runs).

    PYTHONPATH=src python studies/device_sweep.py OUT ENVS TOTAL_STEPS SEEDS WORKERS [key=value ...]

ENVS is comma-separated (e.g. ``Humanoid-v5,HalfCheetah-v5``: put the slowest first, its trials start first).
Runs dpd vs vanilla PPO (zoo preset) with ``dpd.experiments.sweep.run_sweep`` into OUT, exactly as
``dpd sweep --env ... --total-steps TOTAL_STEPS --seeds SEEDS --workers WORKERS --set tensorboard=false --set ...
--out OUT`` would; the report is made afterwards with ``dpd report OUT``. A SIGTERM (e.g. from ``timeout``)
makes every running trial checkpoint and stop; running the same command again resumes them.
"""

import sys
import time

from dpd.experiments.sweep import SweepSpec, run_sweep

if __name__ == "__main__":
    out, envs, total, seeds, workers, *overrides = sys.argv[1:]
    spec = SweepSpec(envs=envs.split(","), total_steps=int(total), seeds=list(range(int(seeds))),
                     overrides=["tensorboard=false", *overrides])
    start = time.time()
    result = run_sweep(spec, out, workers=int(workers),
                       on_update=lambda s: print(f"{time.time() - start:6.0f}s {s['done']}/{s['total']} done, "
                                                 f"{len(s['running'])} running, {s['failed']} failed", flush=True))
    print(result.as_dict(), f"{time.time() - start:.0f}s", flush=True)
