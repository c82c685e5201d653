"""`amage bench --quick` runs end to end and writes the documented structure (values are not checked:
benchmarks are not tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
METRICS = ("mae", "rmse", "r2", "r")
THROUGHPUT = ("synth", "prep_tsv", "prep_nifti", "input_pipeline", "input_pipeline_vs_cache",
              "train_step_demo", "train_step_paper")


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[dict, Path, str]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "quick.json"
    proc = subprocess.run([sys.executable, "-m", "amage_core", "bench", "--quick", "--no-progress",
                           "--workdir", str(tmp / "work"), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail("amage bench --quick failed:\n" + proc.stdout[-2000:] + proc.stderr[-4000:])
    return json.loads(out.read_text()), tmp, proc.stdout


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@pytest.mark.slow
def test_accuracy_structure(quick):
    r = quick[0]
    acc = r["accuracy"]
    assert "amagenet" in acc["models"] and len(acc["models"]) >= 3
    for name, m in acc["models"].items():
        assert all(_number(m[k]) for k in METRICS), name
    assert _number(acc["oracle_mae"]) and _number(acc["floor_mae"])
    assert set(acc["oracle_mae_by_modality"]) == set(acc["floor_mae_by_modality"]) == {"both", "smri", "fmri"}
    assert acc["oracle_mae"] == acc["oracle_mae_by_modality"]["both"]
    assert acc["floor_mae"] == acc["floor_mae_by_modality"]["both"] > acc["oracle_mae"]
    assert all(_number(m["ratio_to_floor"]) and "mae_corrected" not in m for m in acc["models"].values())
    assert all(_number(m[k]) for m in acc["transfer"]["models"].values() for k in METRICS)
    assert isinstance(acc["verdict"]["within_25pct_of_floor"], bool)
    assert isinstance(acc["verdict"]["better_than_every_baseline"], bool)
    for name in ("amagenet", "released-code"):       # deep models: seed runs, their spread
        m = acc["models"][name]
        assert m["seeds"] == 2 and len(m["mae_seeds"]) == 2 and _number(m["mae_seed_sd"])
    assert acc["models"]["ridge-fc"]["seeds"] == 1 and acc["models"]["ridge-fc"]["mae_seed_sd"] is None
    assert any("SD over 2 seeds" in t["target"] for t in acc["verdict"]["targets"])
    assert acc["setup"]["train"]["epochs"] >= 1 and acc["setup"]["t1_shape"]


@pytest.mark.slow
def test_speed_memory_scaling_structure(quick):
    r = quick[0]
    assert set(THROUGHPUT) <= set(r["throughput"])
    for name, e in r["throughput"].items():
        assert {"value", "unit", "baseline", "ratio"} <= set(e), name
        assert _number(e["value"]) and isinstance(e["baseline"], str), name
    mem = r["memory"]
    assert all(k.endswith("_peak_mb") and _number(v) and v > 0 for k, v in mem.items())
    for key in ("prep_1x", "prep_2x", "prep_4x", "train_step_demo", "train_step_paper", "synth"):
        assert f"{key}_peak_mb" in mem
    sc = r["scaling"]
    n = sc["participants"]
    assert n == [n[0], 2 * n[0], 4 * n[0]]
    assert len(sc["prep_seconds"]) == len(sc["epoch_seconds"]) == 3


@pytest.mark.slow
def test_run_record_and_report(quick):
    r, tmp, stdout = quick
    assert {"cpu", "cores_usable", "ram_gb", "gpu"} <= set(r["machine"])
    assert "torch" in r["versions"] and "git_commit" in r and set(r["seeds"]) >= {"train", "camcan"}
    assert "demo_seconds" in r["book"] and r["gpu"]["note"]
    assert "abide" in r
    md = (tmp / "quick.md").read_text()
    for heading in ("## Accuracy", "### Throughput", "### Peak memory", "### Scaling", "## Book"):
        assert heading in md
    assert "(and " not in stdout                       # --quick leaves the book's page alone
    assert not any((tmp / "work" / "bench-scratch").glob("*/*"))   # scratch cohorts removed
