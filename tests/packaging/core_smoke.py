"""The core, end to end on a tiny synthetic cohort, in whatever environment runs this script.

``python core_smoke.py WORKDIR``: every module of amage_core imports; a synthetic cohort is generated,
prepared (tests/profiles/tiny.yml's grid) and cross-validated with AMAge-Net and a ridge baseline.
Prints the versions it ran on (first line, a dict literal), then "core ok".
Used by tests/packaging/test_install.py in environments other than the project's .venv.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import pkgutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "numpy", "scipy", "pandas", "scikit-learn", "statsmodels", "matplotlib",
            "nibabel", "nilearn", "monai", "torch-geometric")


def main(workdir: Path) -> None:
    import amage_core
    from amage_core import workflow as wf
    from amage_core.config import profile_from_dict

    print({name: md.version(name) for name in PACKAGES})
    for m in pkgutil.walk_packages(amage_core.__path__, "amage_core."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
    spec = yaml.safe_load((REPO / "tests/profiles/tiny.yml").read_text())
    spec["workdir"] = str(workdir)
    spec["cohorts"] = {"camcan": spec["cohorts"]["camcan"]}
    spec["cohorts"]["camcan"]["synth"].update(n_bold_nifti=0)     # the tiny profile's 48 participants
    spec["train"].update(epochs=1)
    spec["runtime"].update(fold_workers=1)
    prof = profile_from_dict(spec)
    cohort = wf.prepared(prof, "camcan", progress=False)
    assert cohort.n >= 40, cohort.n
    for model in ("amagenet", "ridge-fc"):
        run = wf.run(prof, "camcan", model, progress=False)
        print(model, "MAE", round(run.metrics["uncorrected"]["pooled"]["mae"], 2))
    print("core ok")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
