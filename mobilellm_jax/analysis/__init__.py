"""Analysis of sweep results: load runs, aggregate seeds, fit scaling laws, compare with the paper.

    from mobilellm_jax import analysis as an
    sweep = an.load_sweep("runs/depth_vs_width")     # Sweep: .runs DataFrame, .failed, .running
    agg = an.aggregate_seeds(sweep.runs)             # per config: mean, std, bootstrap CI, n seeds
    an.compare(sweep.runs, {"num_layers": 8}, {"num_layers": 2})   # Gap: inside the seed spread?
    an.verdicts.for_sweep(sweep.name, sweep.runs)    # the paper's claims, checked
    an.write_report("runs/depth_vs_width")           # REPORT.md + PNGs in that directory

Modules: results (loading), stats (seeds, bootstrap, gaps), fits (power laws), paper (the paper's
numbers), study (what a sweep file declares about its analysis), tables, plots, verdicts, report. Names are imported lazily so that loading results does
not pay for matplotlib or scipy.
"""

from mobilellm_jax import lazy

_EXPORTS = {
    "Sweep": "results", "load_sweep": "results", "load_curves": "results",
    "load_wandb": "results", "require_runs": "results", "resolve_dir": "results",
    "aggregate_seeds": "stats", "bootstrap_ci": "stats", "compare": "stats", "gap": "stats",
    "config_gap": "stats", "pooled_std": "stats", "rank_configs": "stats", "Gap": "stats",
    "fit_power_law": "fits", "fit_families": "fits", "PowerLawFit": "fits",
    "Verdict": "verdicts",
    "Analysis": "report", "analyze": "report", "analyze_sweep": "report", "show": "report",
    "write_report": "report",
}
_MODULES = ("results", "stats", "fits", "paper", "tables", "plots", "verdicts", "report",
            "study")
__all__ = sorted(_EXPORTS) + list(_MODULES)


__getattr__ = lazy.exports(__name__, _EXPORTS, _MODULES)
