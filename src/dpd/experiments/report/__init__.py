"""``dpd report SWEEP_DIR [SWEEP_DIR ...]``: learning curves, a Table-1 style table and IQM aggregates, in Markdown + PNG.

Definitions (written into the report too):
- a run's *final* return: its last deterministic evaluation (mean over ``eval_episodes`` episodes);
- *mean* return: the mean of its evaluation returns over the whole run (every evaluation point, step 0 included);
- *max* return: the largest evaluation return of the run;
- pair rows (DPD and the ``independent`` control): each student, the *students' mean*, the *better student* and the
  *worse student* (per run, the student with the higher / lower value of that column);
- *distillation gain*: a DPD variant's statistic minus the independent pair's same statistic (same budget split, no
  distillation); *selection gain*: better student minus students' mean (what picking the better of two learners buys
  without any distillation); both with 95% bootstrap CIs, per task in raw returns and pooled in normalised units;
- aggregates use the final return, normalised per task (``dpd.experiments.scores``), with 95% stratified bootstrap
  CIs (scipy.stats.bootstrap, rliable's definitions); "DPD (students' mean)" scores a DPD run by the mean of its two students.
Only finished runs enter the statistics; unfinished, failed and missing runs are listed. Several sweep folders
with the same budget, preset and overrides (a study's stages, extra seeds in a folder of their own) make one report.
"""

from dpd.experiments.report.figures import plot_arms, plot_curves
from dpd.experiments.report.markdown import (
    REPORT_DIR,
    format_interval,
    mean_std,
    pair_end_cells,
    write_report,
)
from dpd.experiments.report.markdown import _versus_zero as _versus_zero
from dpd.experiments.report.runs import (
    COMPARABLE,
    HALF,
    INDEPENDENT,
    PAIR_STATS,
    Run,
    arm_order,
    file_safe,
    load_runs,
    load_sweeps,
    read_spec,
)
from dpd.experiments.report.statistics import (
    BOOTSTRAP_REPS,
    SMALL_SAMPLE,
    aggregates,
    bootstrap_ci,
    difference_ci,
    gains,
    iqm,
    mean_ci,
    normalizer,
    probability_of_improvement,
    stream,
    stream_seed,
)

__all__ = [
    "BOOTSTRAP_REPS", "COMPARABLE", "HALF", "INDEPENDENT", "PAIR_STATS", "REPORT_DIR", "SMALL_SAMPLE", "Run",
    "aggregates", "arm_order", "bootstrap_ci", "difference_ci", "file_safe", "format_interval", "gains", "iqm", "load_runs",
    "load_sweeps", "mean_ci", "mean_std", "normalizer", "pair_end_cells", "plot_arms", "plot_curves",
    "probability_of_improvement", "read_spec", "stream", "stream_seed", "write_report",
]  # fmt: skip
