"""The benchmark's results as Markdown (``FILE.md`` and the book's page): one table per section."""
from __future__ import annotations

from typing import Any

from amage_core.bench.settings import BASELINE_MODELS, DEEP_MODELS

LABELS = {"synth": "cohort generation", "prep_tsv": "preparation, XCP-D TSV path",
          "prep_nifti": "preparation, NIfTI masker path", "input_pipeline": "T1 input pipeline (prepared cohort)",
          "input_pipeline_vs_cache": "T1 input pipeline (prepared cohort)",
          "train_step_demo": "training step, demo sizes (CPU)", "train_step_paper": "training step, paper sizes (CPU)"}


def describe(m: dict[str, Any]) -> str:
    """One line naming the machine, for tables and the README."""
    gpu = f", GPU {m['gpu']['name']}" if m.get("gpu") else ", no GPU"
    load = m.get("load_average_start")
    busy = f"; load average at the start {load[0]:g} (1 min)" if load else ""
    return (f"{m['cpu']}, {m['cores_usable']} usable cores ({m['cores_logical']} logical), "
            f"{m['ram_gb']:g} GB RAM{gpu}, {m['torch_threads']} torch threads{busy}")


def _ordered(items: dict[str, Any], order) -> list[tuple[str, Any]]:
    """``items`` in ``order`` (a JSON file read back has its keys sorted), unknown keys last."""
    rank = {k: i for i, k in enumerate(order)}
    return sorted(items.items(), key=lambda kv: rank.get(kv[0], len(rank)))


def _num(x: Any, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "**no**"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def _sig(x: Any) -> str:
    """A throughput with about three significant digits (2,001; 49.6; 0.128)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return _num(x)
    size = abs(x)
    return _num(x, 0 if size >= 100 else 1 if size >= 10 else 2 if size >= 1 else 3)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _time(m: dict[str, Any]) -> str:
    if not m.get("reused"):
        return f"{_num(m.get('seconds'), 0)} s"
    if m.get("computed_seconds"):
        return f"reused (computed in {_num(m['computed_seconds'], 0)} s)"
    return f"reused ({_num(m['epoch_seconds'], 0)} s of epochs)" if m.get("epoch_seconds") else "reused"


METRIC_HEADER = ["model", "seeds", "MAE over seeds (mean ± SD)", "MAE", "RMSE", "R²", "r", "r(gap, age)",
                 "floor", "MAE / floor", "time"]


def _metric_table(models: dict[str, dict]) -> list[str]:
    return _table(METRIC_HEADER, [
        [name, m.get("seeds", 1),
         "n/a" if m.get("mae_seed_sd") is None else f"{_num(m['mae_seed_mean'])} ± {_num(m['mae_seed_sd'])}",
         *(_num(m.get(k)) for k in ("mae", "rmse", "r2", "r", "gap_age_r", "floor_mae")),
         f"{_num(m.get('ratio_to_floor'))}x" if m.get("ratio_to_floor") else "n/a", _time(m)]
        for name, m in _ordered(models, DEEP_MODELS + BASELINE_MODELS)])


def _bounds_line(a: dict[str, Any]) -> str:
    f, o = a.get("floor_mae_by_modality") or {}, a.get("oracle_mae_by_modality") or {}
    return (f"Reachable floor MAE (the Bayes-optimal error given each participant's noise-free generative "
            f"parameters; each model is measured against the floor of the modalities it sees): both "
            f"{_num(f.get('both'))}, T1 {_num(f.get('smri'))}, fMRI {_num(f.get('fmri'))}. Oracle MAE (an ideal "
            f"observer of the latent ages, an unreachable bound): both {_num(o.get('both'))}, T1 "
            f"{_num(o.get('smri'))}, fMRI {_num(o.get('fmri'))}.")


def accuracy(a: dict[str, Any]) -> list[str]:
    if not a.get("models"):
        return [f"Not run: {a.get('skipped', 'no models')}.", ""]
    st, t = a["setup"], a["setup"]["train"]
    c = st["cohorts"]["camcan"]
    m = st["model"]
    out = [f"Synthetic {c['preset']} cohort, {c['n_subjects']} participants ({a['n_included']['camcan']} after QC), "
           f"{c['voxel_size_mm']:g} mm T1 resampled to {'x'.join(map(str, st['t1_shape']))}, {st['atlas']} graphs; "
           f"{t['folds']}-fold CV ({t['protocol']}), {t['epochs']} epochs (the training recipe: warmup + cosine, EMA, no early stopping), "
           f"batch {t['batch_size']}, lr {t['lr']:g}, seed {t['seed']}. Model sizes: GAT {m['gat']['hidden']}x"
           f"{m['gat']['heads']} heads, DenseNet init {m['densenet']['init_features']} growth "
           f"{m['densenet']['growth_rate']} blocks {m['densenet']['block_config']}, fusion {m['fusion']['dim']}. "
           "Accuracy of the uncorrected predictions; all models on the same folds. A deep model is trained "
           "with several seeds: MAE and the columns after it are those of the seed ensemble (each "
           "participant's predictions averaged over seeds); the verdicts compare means over seeds.", ""]
    out += _metric_table(a["models"])
    out += [_bounds_line(a), ""]
    v = a["verdict"]
    out += [f"- AMAge-Net within 25% of the multimodal floor MAE: {_num(v['within_25pct_of_floor'])} "
            f"({_num(v['ratio_to_floor'])}x the floor)",
            f"- AMAge-Net better than every other model: {_num(v['better_than_every_baseline'])} "
            f"(best other: {v['best_other_model']}, {_num(v['best_other_mae'])})", ""]
    out += [f"> {n}" for n in v["notes"]] + ([""] if v["notes"] else [])
    if v.get("targets"):
        out += ["Aims of the training work (issue 15):", ""]
        out += _table(["aim", "measured", "met", "the same between the reachable floors"],
                      [[t["target"], t["value"], _num(t["met"]) if t["met"] is not None else "n/a",
                        t.get("at_floor", "")] for t in v["targets"]])
    tr = a["transfer"]
    out += [f"Transfer: the camcan-like cross-validation's fold models (their mean), tested on every oasis3-like one "
            f"(n={a['n_included']['oasis3']}; floor MAE both {_num(tr.get('floor_mae'))}, oracle, unreachable, "
            f"{_num(tr.get('oracle_mae'))}).", ""]
    out += _metric_table(tr["models"])
    return out


def speed(r: dict[str, Any]) -> list[str]:
    thr, mem, sc = r.get("throughput") or {}, r.get("memory") or {}, r.get("scaling") or {}
    if not thr:
        return [f"Not run: {sc.get('skipped', '')}.", ""]
    rows = [[LABELS.get(k, k), _sig(e["value"]), e["unit"], e["baseline"], _sig(e["baseline_value"]),
             f"{_num(e['ratio'])}x"] for k, e in _ordered(thr, LABELS)]
    out = ["### Throughput", ""] + _table(["measurement", "value", "unit", "against", "its value", "ratio"], rows)
    notes = [f"- {LABELS.get(k, k)}: {e['note']}" for k, e in _ordered(thr, LABELS) if e.get("note")]
    out += notes + ([""] if notes else [])
    out += ["### Peak memory (resident, whole process tree)", ""]
    out += _table(["measurement", "peak MB"], [[k.removesuffix("_peak_mb"), _num(v, 0)] for k, v in mem.items()])
    out += ["### Scaling", ""]
    rows = [[n, _num(g, 1), _num(p, 1), _num(m, 0), _num(e, 2)] for n, g, p, m, e in
            zip(sc["participants"], sc["generation_seconds"], sc["prep_seconds"], sc["prep_peak_mb"], sc["epoch_seconds"])]
    out += _table(["participants", "generation s", "preparation s", "preparation peak MB", "one epoch s"], rows)
    out += [f"Preparation time 4x/1x: {_num(sc['prep_time_ratio_4x_over_1x'])} (linear: 4; at most linear: "
            f"{_num(sc['prep_at_most_linear'])}); its peak memory 4x/1x: {_num(sc['prep_memory_ratio_4x_over_1x'])} "
            f"(flat: {_num(sc['prep_memory_flat'])}); epoch time 4x/1x: {_num(sc['epoch_time_ratio_4x_over_1x'])}.", ""]
    return out


def gpu(g: dict[str, Any]) -> list[str]:
    if not g.get("fp32"):
        return [g.get("note") or g.get("skipped", "not run"), ""]
    rows = [[k, _num(g[k].get("samples_per_s"), 1), _num(g[k].get("seconds_per_step"), 3),
             _num(g[k].get("peak_gpu_mb"), 0), g[k].get("error", "")] for k in ("fp32", "bf16") if g.get(k)]
    out = [f"{g['device']}: {g['step']['note']}.", ""]
    out += _table(["precision", "samples/s", "s/step", "peak GPU MB", "error"], rows)
    out += [f"bf16 autocast speed-up: {_num(g.get('bf16_speedup'))}x; paper epoch: {_num(g.get('paper_epoch_seconds'), 0)} s "
            f"({g.get('paper_epoch_note', '')}); fits a 16 GB GPU: {_num(g.get('fits_16gb'))}.", ""]
    return out


def book(b: dict[str, Any]) -> list[str]:
    if b.get("demo_seconds") is None:
        return [b.get("note") or b.get("skipped", "not run"), ""]
    out = [f"Demo book: {_num(b['demo_seconds'], 0)} s of chapter execution (aim {b['aim_seconds']} s: "
           f"{_num(b['within_aim'])}; limit {b['limit_seconds']} s: {_num(b['within_limit'])}); {b['note']}.", ""]
    return out + _table(["chapter", "seconds"], [[k, _num(v, 1)] for k, v in b["chapters"].items()])


def abide(a: dict[str, Any]) -> list[str]:
    if a.get("skipped"):
        return [a["skipped"], ""]
    if not a.get("available", True) or not a.get("cohorts"):
        return [f"Not available: {a.get('reason') or a.get('result', 'no figures')}.", ""]
    out = [f"Real data, sites held out ({a.get('n_folds')} folds); controls' accuracy (uncorrected), autism - "
           "control gap of the bias-corrected predictions (a gap analysis) as Cohen's d (95% CI).", ""]
    rows = []
    for cohort, c in a["cohorts"].items():
        for model, m in c["models"].items():
            ci = m.get("autism_gap_d_ci") or [None, None]
            rows.append([cohort, m.get("label", model), _num(m.get("mae")), _num(m.get("r")),
                         f"{_num(m.get('autism_gap_d'))} [{_num(ci[0])}, {_num(ci[1])}]",
                         "reused" if m.get("reused") else f"{_num(m.get('seconds'), 0)} s"])
    return out + _table(["cohort", "model", "MAE", "r", "autism gap d (bias-corrected gap)", "time"], rows)


def render(r: dict[str, Any], title: bool = True) -> str:
    """The whole report (see the module docstring); ``title=False`` leaves out the top heading (for a
    page that has its own)."""
    git = r.get("git", {})
    commit = (git.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
    out = [f"# Benchmark ({r['mode']})", ""] if title else [f"Run mode: {r['mode']}.", ""]
    out += [f"Machine: {describe(r['machine'])}. Commit {commit}; {r['created']}; device {r['device']}; "
           f"{_num(r.get('elapsed_seconds'), 0)} s in all.", "", "## Accuracy", ""]
    out += accuracy(r["accuracy"])
    out += ["## Speed and memory", ""] + speed(r)
    out += ["## GPU", ""] + gpu(r.get("gpu", {}))
    out += ["## Book", ""] + book(r.get("book", {}))
    out += ["## ABIDE", ""] + abide(r.get("abide", {}))
    if r.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(out)
