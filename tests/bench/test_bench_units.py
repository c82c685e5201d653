"""amage bench, piece by piece: the accuracy profile, the verdict, throughput entries, the report,
the book timings and the command line. Nothing here is timed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from amage_core.bench import markdown, suite
from amage_core.bench.accuracy import verdict
from amage_core.bench.settings import FULL, QUICK, accuracy_profile
from amage_core.bench.speed import entry, step_model
from amage_core.config import ConfigError, load_profile, replace

REPO = Path(__file__).resolve().parents[2]


def test_accuracy_profile_resizes_only_the_two_cohorts():
    demo = load_profile("demo")
    prof = accuracy_profile(demo, FULL)
    assert prof.cohorts["camcan"].synth.n_subjects == 652
    assert prof.cohorts["oasis3"].synth.n_subjects == FULL.n_oasis3
    # everything else is the demo's (grid, model sizes, schedule, seeds, other cohorts), except the
    # outer folds: 3 at Cam-CAN scale, whatever the demo book's count
    import dataclasses
    assert prof.prep.t1_shape == demo.prep.t1_shape and prof.model == demo.model
    assert prof.train.folds == 3 and prof.train == dataclasses.replace(demo.train, folds=3)
    assert prof.cohorts["camcan"].synth.seed == demo.cohorts["camcan"].synth.seed
    assert set(prof.cohorts) == set(demo.cohorts)
    assert prof.name != demo.name


def test_quick_profile_is_tiny_and_moves_the_workdir(tmp_path):
    prof = accuracy_profile(load_profile("demo"), QUICK, str(tmp_path))
    assert prof.workdir == str(tmp_path)
    assert prof.cohorts["camcan"].synth.n_subjects == QUICK.n_camcan < 100
    assert prof.train.epochs <= 2 and prof.train.folds == 2


def test_accuracy_profile_refuses_real_data():
    demo = load_profile("demo")
    real = replace(demo, cohorts={"camcan": {"source": "camcan", "root": "/nowhere"}})
    with pytest.raises(ValueError, match="real data"):
        accuracy_profile(real, QUICK)


def _models(**maes):
    return {k: {"mae": v} for k, v in maes.items()}


def test_verdict_met():
    v = verdict(_models(amagenet=3.6, smri=4.0, fmri=6.5, stacking=3.7), {"both": 3.0, "smri": 3.3, "fmri": 6.0})
    assert v["within_25pct_of_floor"] and v["better_than_every_baseline"]
    assert v["ratio_to_floor"] == pytest.approx(1.2) and v["best_other_model"] == "stacking"
    assert v["notes"] == []


def test_verdict_missed_says_why():
    v = verdict(_models(amagenet=7.0, smri=8.0, fmri=9.0, ridge_fc=6.5), {"both": 3.0, "smri": 3.1, "fmri": 6.0},
                {"both": 2.7})
    assert not v["within_25pct_of_floor"] and not v["better_than_every_baseline"]
    text = " ".join(v["notes"])
    assert "2.33x" in text and "ridge_fc" in text and "sMRI branch" in text and "fMRI branch" in text
    assert "unreachable" in text and "2.70" in text


def test_targets_compare_seed_means_and_name_each_aim():
    from amage_core.bench.accuracy import targets

    def seeded(maes, gap=-0.1):
        import numpy as np
        return {"mae": min(maes), "mae_seeds": maes, "mae_seed_mean": float(np.mean(maes)),
                "mae_seed_sd": float(np.std(maes, ddof=1)), "seeds": len(maes), "gap_age_r_seed_mean": gap}

    models = {"amagenet": seeded([4.0, 4.2, 4.4]), "smri": seeded([4.5, 4.6, 4.7]), "fmri": seeded([7.0, 8.0, 9.0]),
              "stacking": {"mae": 4.1}, "brainage-gpr": {"mae": 4.4}, "ridge-fc": {"mae": 8.5}}
    met = {t["target"]: t["met"] for t in targets(models)}
    # the ensemble MAE (4.0) would beat stacking; the seed mean (4.2) does not
    assert met["AMAge-Net below stacking"] is False
    assert met["AMAge-Net at least 5% below smri"] is True            # 4.2 <= 0.95 * 4.6
    assert met["AMAge-Net at least 5% below fmri"] is True
    assert met["smri at or below brainage-gpr"] is False and met["fmri at or below ridge-fc"] is True
    assert met["fmri: SD over 3 seeds at most 0.3"] is False and met["amagenet: SD over 3 seeds at most 0.3"] is True
    assert met["AMAge-Net r(gap, age) at least -0.3"] is True
    assert verdict(models, {"both": 3.0})["best_other_model"] == "stacking"
    # the floors say what a Bayes-optimal observer gains from the second modality
    floors = {"both": 2.84, "smri": 2.94, "fmri": 5.96}
    at_floor = {t["target"]: t.get("at_floor") for t in targets(models, floors)}
    assert at_floor["AMAge-Net at least 5% below smri"] == "2.84 vs 2.94 (-3.4%)"
    assert at_floor["AMAge-Net below stacking"] is None
    notes = " ".join(verdict(models, floors)["notes"])
    assert "3.4% below the sMRI floor" in notes and "fMRI floor" not in notes


def test_entry_ratio():
    e = entry(30.0, "samples/s", "plain", 3.0, n=4)
    assert e == {"value": 30.0, "unit": "samples/s", "baseline": "plain", "baseline_value": 3.0, "ratio": 10.0, "n": 4}
    assert entry(1.0, "x/s", "none", 0.0)["ratio"] is None


def test_step_models_come_from_their_profiles():
    demo_step, paper_step = FULL.steps
    demo = load_profile("demo").model
    assert step_model(demo_step)["densenet"]["init_features"] == demo.densenet.init_features
    assert step_model(demo_step)["gat"]["hidden"] == demo.gat.hidden
    paper = step_model(paper_step, densenet={"checkpointing": False})
    assert paper["densenet"]["init_features"] == 64 and paper["densenet"]["checkpointing"] is False
    assert step_model(paper_step, "smri")["variant"] == "smri"


def test_book_timings(tmp_path):
    from amage_core.book import ChapterResult, find_chapters, record_timings

    missing = suite.book_timings(tmp_path)
    assert missing["demo_seconds"] is None and "make book" in missing["note"]
    out = tmp_path / "chapters"
    first, second = (nb.stem for nb in find_chapters()[:2])
    record_timings(out, "demo", [ChapterResult(second, 30.0, False), ChapterResult(first, 1.5, False),
                                 ChapterResult("00_removed_since", 99.0, False)])
    partial = suite.book_timings(tmp_path)
    assert partial["demo_seconds"] == 31.5 and list(partial["chapters"]) == [first, second]
    assert partial["whole_run"] is False and "sum of each chapter" in partial["note"]
    assert suite.book_timings(tmp_path, profile="paper")["demo_seconds"] is None   # kept per profile
    every = [ChapterResult(nb.stem, 10.0, False) for nb in find_chapters()]
    record_timings(out, "demo", every, html_seconds=20.0)
    whole = suite.book_timings(tmp_path)
    assert whole["whole_run"] is True and whole["demo_seconds"] == 10.0 * len(every) + 20.0
    assert whole["within_aim"] is (whole["demo_seconds"] <= whole["aim_seconds"])
    # a later run that reuses every chapter keeps the chapters' times but measures nothing whole
    record_timings(out, "demo", [ChapterResult(nb.stem, 0.0, True) for nb in find_chapters()], html_seconds=5.0)
    again = suite.book_timings(tmp_path)
    assert again["whole_run"] is False and again["demo_seconds"] == 10.0 * len(every)


def test_machine_names_cpu_cores_and_memory():
    m = suite.machine()
    assert m["cores_usable"] >= 1 and m["ram_gb"] > 0 and m["cpu"]
    assert "usable cores" in markdown.describe(m)
    assert suite.git_state().keys() == {"commit", "dirty"}


def _fake_results() -> dict:
    model = {"mae": 5.0, "rmse": 6.0, "r2": 0.8, "r": 0.9, "gap_age_r": -0.4, "floor_mae": 2.5, "ratio_to_floor": 2.0,
             "seconds": 12.0, "reused": False}
    return {
        "mode": "quick", "device": "cpu", "created": "2026-01-01T00:00:00+00:00", "elapsed_seconds": 10,
        "machine": suite.machine(), "git": {"commit": "abc", "dirty": True},
        "accuracy": {"models": {"amagenet": model, "ridge-fc": {**model, "mae": 6.0}},
                     "oracle_mae_by_modality": {"both": 2.4, "smri": 2.6, "fmri": 4.0}, "oracle_mae": 2.4,
                     "floor_mae_by_modality": {"both": 2.5, "smri": 2.6, "fmri": 5.9}, "floor_mae": 2.5,
                     "n_included": {"camcan": 48, "oasis3": 24},
                     "setup": {"cohorts": {"camcan": {"preset": "camcan-like", "n_subjects": 48, "voxel_size_mm": 8.0}},
                               "t1_shape": [16, 20, 16], "atlas": "dosenbach160",
                               "model": {"gat": {"hidden": 8, "heads": 2}, "densenet": {"init_features": 8, "growth_rate": 4,
                                         "block_config": [1, 1]}, "fusion": {"dim": 16}},
                               "train": {"folds": 2, "protocol": "nested", "epochs": 2,
                                         "batch_size": 16, "lr": 0.001, "seed": 0}},
                     "verdict": verdict(_models(amagenet=5.0, **{"ridge-fc": 6.0}), {"both": 2.5}),
                     "transfer": {"models": {"amagenet": model}, "oracle_mae": 2.5, "floor_mae": 2.7}},
        "throughput": {"input_pipeline": entry(100.0, "samples/s", "MONAI", 10.0, note="a note")},
        "memory": {"prep_1x_peak_mb": 800.0},
        "scaling": {"participants": [8, 16, 32], "generation_seconds": [1, 2, 4], "prep_seconds": [1, 2, 4],
                    "prep_peak_mb": [800, 800, 800], "epoch_seconds": [1, 2, 4], "prep_time_ratio_4x_over_1x": 4.0,
                    "prep_at_most_linear": True, "prep_memory_ratio_4x_over_1x": 1.0, "prep_memory_flat": True,
                    "epoch_time_ratio_4x_over_1x": 4.0},
        "gpu": {"available": False, "note": "not requested"},
        "book": {"demo_seconds": None, "note": "no timings"},
        "abide": {"skipped": "not there"},
        "notes": ["a run note"],
    }


def test_markdown_report_has_every_section():
    text = markdown.render(_fake_results())
    for heading in ("# Benchmark (quick)", "## Accuracy", "### Throughput", "### Scaling", "## GPU", "## Book", "## ABIDE"):
        assert heading in text
    assert "| amagenet | 1 | n/a | 5.00 | 6.00 | 0.80 | 0.90 | -0.40 | 2.50 | 2.00x | 12 s |" in text
    assert "within 25% of the multimodal floor MAE: **no**" in text and "better than every other model: yes" in text
    assert "Reachable floor MAE" in text and "unreachable bound" in text and "bias-corrected" not in text
    assert "10.00x" in text and "a run note" in text
    assert not markdown.render(_fake_results(), title=False).startswith("# ")


def test_markdown_report_of_skipped_sections():
    r = _fake_results()
    r.update(accuracy={"models": {}, "skipped": "not selected (--only)"}, throughput={}, memory={},
             scaling={"skipped": "not selected (--only)"})
    text = markdown.render(r)
    assert text.count("not selected (--only)") == 2


def test_cli_refuses_an_output_that_is_not_json(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "amage_core", "bench", "--quick", "--out", str(tmp_path / "x.txt")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and ".json" in proc.stderr


def test_unknown_section_is_refused(tmp_path):
    from amage_core.bench.suite import run_benchmark

    with pytest.raises(ValueError, match="unknown section"):
        run_benchmark("demo", tmp_path / "x.json", quick=True, only=["nope"], workdir=str(tmp_path))


def test_unknown_model_is_refused_before_anything_runs(tmp_path):
    from amage_core.bench.suite import run_benchmark

    with pytest.raises(ValueError, match="unknown model.*nope"):
        run_benchmark("demo", tmp_path / "x.json", quick=True, only=["accuracy"], models=["smri", "nope"],
                      workdir=str(tmp_path))
    assert not (tmp_path / "x.json").exists()


def test_worker_refuses_unknown_tasks(tmp_path):
    from amage_core.bench import measure

    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(SystemExit, match="unknown benchmark task"):
        measure.main(["nope", str(tmp_path / "a.json"), str(tmp_path / "r.json")])


def test_profile_errors_name_the_profile():
    with pytest.raises(ConfigError):
        accuracy_profile(load_profile("no-such-profile"), QUICK)


def test_markdown_abide_table():
    model = {"label": "ridge on FC", "mae": 3.7, "r": 0.75, "mae_corrected": 3.6, "autism_gap_d": 0.1,   # never shown
             "autism_gap_d_ci": [-0.1, 0.3], "seconds": 4.0, "reused": False}
    lines = markdown.abide({"available": True, "n_folds": 5, "cohorts": {"abide": {"models": {"ridge-fc": model}}}})
    assert "| abide | ridge on FC | 3.70 | 0.75 | 0.10 [-0.10, 0.30] | 4 s |" in lines
    assert "Not available: no data" in markdown.abide({"available": False, "reason": "no data"})[0]


def _fake_measurements(s):
    from amage_core.bench.measure import Measured
    from amage_core.bench.speed import scales, step_baseline

    def m(result, peak=500.0):
        return Measured(result, 2.0, 1.5, peak)

    sizes = scales(s)
    jobs = {k: {"seconds": n / 10, "per_minute": 600.0} for k, n in sizes.items()}
    jobs["1x-serial"] = {"seconds": 1.0, "per_minute": 300.0}
    out = {"synth": m({"setup_seconds": 3.0, "jobs": jobs})}
    out.update({f"prep_{k}": m({"seconds": n / 5, "per_minute": 300.0}, 800.0 + n / 100) for k, n in sizes.items()})
    out["prep_bold-bold"], out["prep_bold-xcpd"] = m({"per_minute": 10.0}), m({"per_minute": 100.0})
    out["epochs"] = m({k: {"epoch_seconds": n / 20, "dataset_seconds": 0.1} for k, n in sizes.items()})
    out["pipeline"] = m({"n": 8, "grid": [16, 20, 16], "batch_size": 4, "prepared": {"samples_per_s": 1000.0},
                         "monai_dataset": {"samples_per_s": 50.0},
                         "monai_cache": {"samples_per_s": 2000.0, "fill_seconds": 0.5}})
    for step in s.steps:
        out[f"step_{step.name}"] = m({"samples_per_s": 4.0, "parameters": 1000})
        out[f"step_{step_baseline(step)[0]}"] = m({"samples_per_s": 2.0, "parameters": 900})
    return out


def test_speed_sections_from_measurements():
    from amage_core.bench.speed import _memory, _scaling, _throughput

    meas = _fake_measurements(QUICK)
    thr = _throughput(meas, QUICK, n_jobs=2)
    assert thr["input_pipeline"]["ratio"] == 20.0 and thr["input_pipeline_vs_cache"]["ratio"] == 0.5
    assert thr["prep_tsv"]["ratio"] == 30.0 and thr["prep_nifti"]["ratio"] == 0.1 and thr["synth"]["ratio"] == 2.0
    assert thr["train_step_demo"]["ratio"] == 2.0 and "checkpointing" in thr["train_step_paper"]["baseline"]
    mem = _memory(meas, QUICK)
    assert {"prep_1x_peak_mb", "prep_4x_peak_mb", "train_step_demo_peak_mb", "train_step_paper_peak_mb",
            "train_step_paper_no_checkpointing_peak_mb", "epochs_peak_mb"} <= set(mem)
    sc = _scaling(meas, QUICK)
    assert sc["participants"] == [8, 16, 32] and sc["prep_time_ratio_4x_over_1x"] == 4.0
    assert sc["prep_at_most_linear"] and sc["prep_memory_flat"]


def test_gpu_section_is_skipped_with_a_note_without_cuda():
    import torch

    from amage_core.bench.speed import gpu
    from amage_core.bench.tasks import cuda_step

    assert "not requested" in gpu(QUICK, "cpu")["note"]
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the smoke run with --device cuda covers it")
    skipped = gpu(QUICK, "cuda")
    assert skipped["available"] is False and "is_available() is False" in skipped["note"]
    assert cuda_step({}, {}) == {"available": False}


def test_abide_section_runs_the_bench_module(tmp_path):
    import yaml

    from amage_core.bench.suite import run_benchmark
    from amage_core.config import PROFILE_DIR, read_yaml

    data = read_yaml((PROFILE_DIR / "demo.yml").read_text())
    data.setdefault("cohorts", {}).setdefault("abide", {})["root"] = str(tmp_path / "nowhere")
    (tmp_path / "p.yml").write_text(yaml.safe_dump(data))
    out, work = tmp_path / "r.json", str(tmp_path / "work")
    quick = run_benchmark(str(tmp_path / "p.yml"), out, quick=True, only=["abide"], workdir=work)
    assert quick["abide"] == {"skipped": "not run with --quick"}
    result = run_benchmark(str(tmp_path / "p.yml"), out, only=["abide"], workdir=work)["abide"]   # no data: the reason, in its file too
    assert result["available"] is False and "nowhere" in result["reason"] and (tmp_path / "r_abide.json").is_file()
