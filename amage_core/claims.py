"""A computed verdict on every claim of the paper: holds, fails or inconclusive, with its numbers.

Each claim is checked on the camcan-like cohort (the profile's ``camcan``) from the book's own runs
(trained once, reused by the chapters that show them):

==========================================  ===================================================
claim                                       evidence
==========================================  ===================================================
beats unimodal models                       AMAge-Net against the GAT and the DenseNet alone
beats baselines                             AMAge-Net against ridge (FC), PCA+GPR (T1), stacking
each fusion part helps                      AMAge-Net against no-gate, no-xattn, concat
the encoders matter                         AMAge-Net against flat-gat and gcn (when run)
regions that drive aging                    attributions against the injected truth (synthetic)
distinct trajectories by sex                the age x sex term of the brain-age-gap model
generalises to another cohort               camcan -> oasis3: AMAge-Net against stacking
==========================================  ===================================================

Model comparisons are :func:`amage_core.evaluate.verdicts.compare` (seed-mean MAE beyond the seeds'
spread and a paired Wilcoxon test); a claim with several comparisons holds when all hold, fails when
any fails and is inconclusive otherwise. Attributions: a measure recovers the truth when its AUROC
exceeds the 95th percentile of random rankings. Sex: the interaction's p < 0.05 (its sign is shown).
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from amage_core import workflow as wf
from amage_core.config import Profile, as_profile

COHORT = "camcan"
MODEL_LABELS = {"amagenet": "AMAge-Net", "fmri": "GAT (fMRI)", "smri": "DenseNet (T1)", "ridge-fc": "ridge (FC)",
                "brainage-gpr": "PCA+GPR (T1)", "stacking": "stacking (FC+T1)", "no-gate": "no gate",
                "no-xattn": "no cross-attention", "concat": "concatenation", "flat-gat": "flat GAT",
                "gcn": "GCN encoder"}
CLAIMS = {
    "beats unimodal models": ["fmri", "smri"],
    "beats baselines": ["ridge-fc", "brainage-gpr", "stacking"],
    "each fusion part helps": ["no-gate", "no-xattn", "concat"],
    "the encoders matter": ["flat-gat", "gcn"],
}


def _row(claim: str, evidence: str, outcome: str, numbers: str) -> dict[str, str]:
    return {"claim": claim, "evidence": evidence, "verdict": outcome, "numbers": numbers}


def model_rows(profile: Profile, claim: str, others: list[str], ran: set[str] | None = None) -> list[dict]:
    """One row per comparison of AMAge-Net with each model of ``others`` (skipped, as
    inconclusive, when not in ``ran``: a variant the profile leaves out)."""
    from amage_core.evaluate import verdicts

    fused = wf.seed_runs(profile, COHORT, "amagenet")
    rows = []
    for other in others:
        label = MODEL_LABELS.get(other, other)
        if ran is not None and other not in ran:
            rows.append(_row(claim, f"AMAge-Net vs {label}", "inconclusive", "not run in this profile"))
            continue
        v = verdicts.compare(verdicts.tables_of(fused), verdicts.tables_of(wf.seed_runs(profile, COHORT, other)),
                             "AMAge-Net", label)
        rows.append(_row(claim, f"AMAge-Net vs {label}", v.outcome, verdicts.verdict_sentence(v)))
    return rows


def region_rows(profile: Profile, steps: int) -> list[dict]:
    """Attributions of AMAge-Net (first seed) against the regions the synthetic truth ages."""
    from amage_core.interpret import regions
    from amage_core.synth import load_truth

    claim = "regions that drive aging"
    if profile.cohorts[COHORT].source != "synthetic":
        return [_row(claim, "attributions vs truth", "inconclusive", "real data: no ground truth")]
    cohort = wf.prepared(profile, COHORT, progress=False)
    attr = wf.attributions(profile, COHORT, "amagenet", steps=steps)
    table = regions.region_table(attr, cohort.regions)
    truth = load_truth(wf.synthetic_source(profile, COHORT, progress=False))
    rows = []
    for measure, r in regions.truth_agreement(table, truth.regions).iterrows():
        outcome = "holds" if r["AUROC"] > r["random AUROC (95th pct)"] else "fails"
        rows.append(_row(claim, f"{measure} vs {r['truth']}", outcome,
                         f"AUROC {r['AUROC']:.3f} against a random 95th percentile of "
                         f"{r['random AUROC (95th pct)']:.3f} over {int(r['regions'])} regions"))
    return rows


def sex_rows(profile: Profile) -> list[dict]:
    """The age x sex interaction of the bias-corrected brain-age gap (AMAge-Net seed ensemble)."""
    from amage_core import report
    from amage_core.evaluate.verdicts import format_p
    from amage_core.stats import sex

    cohort = wf.prepared(profile, COHORT, progress=False)
    predictions = report.with_participants(wf.seed_runs(profile, COHORT, "amagenet"), cohort)
    coef = sex.coefficient_table(sex.trajectory_model(predictions)).loc["age:male"]
    outcome = "holds" if coef["p"] < 0.05 else "inconclusive"
    return [_row("distinct trajectories by sex", "gap ~ age x sex, age:male term", outcome,
                 f"{coef['estimate']:+.3f} years of gap per year of age in males relative to females "
                 f"(95% CI {coef['ci_low']:+.3f} to {coef['ci_high']:+.3f}), p {format_p(coef['p'])}")]


def transfer_rows(profile: Profile) -> list[dict]:
    """Trained on camcan, tested on oasis3: AMAge-Net against stacking on the same participants."""
    from amage_core.evaluate import verdicts

    if "oasis3" not in profile.cohorts:
        return [_row("generalises to another cohort", "camcan -> oasis3", "inconclusive", "no second cohort")]
    fused = wf.seed_runs(profile, COHORT, "amagenet", test_cohort="oasis3")
    stacked = wf.seed_runs(profile, COHORT, "stacking", test_cohort="oasis3")
    v = verdicts.compare(verdicts.tables_of(fused), verdicts.tables_of(stacked), "AMAge-Net (camcan -> oasis3)",
                         "stacking (camcan -> oasis3)")
    return [_row("generalises to another cohort", "transfer: AMAge-Net vs stacking", v.outcome,
                 verdicts.verdict_sentence(v))]


def overall(rows: list[dict]) -> str:
    """A claim's verdict from its rows: holds if all hold, fails if any fails, else inconclusive."""
    outcomes = [r["verdict"] for r in rows]
    if outcomes and all(o == "holds" for o in outcomes):
        return "holds"
    return "fails" if "fails" in outcomes else "inconclusive"


def paper_claims(profile: str | Profile) -> pd.DataFrame:
    """Every claim's rows (see the module docstring) with the claim's overall verdict.

    The ablation variants and the Integrated Gradients steps are those the profile gives chapters 8
    and 9 (``book.chapter_parameters``), so the verdicts rest on the runs those chapters show; a
    variant the profile leaves out makes its comparison inconclusive."""
    prof = as_profile(profile)
    params = prof.book.chapter_parameters
    variants = params.get("08_ablations", {}).get("variants")
    ig_steps = int(params.get("09_interpretability", {}).get("ig_steps", 16))
    ran = set(variants) if variants is not None else None
    rows: list[dict[str, Any]] = []
    for claim, others in CLAIMS.items():
        rows += model_rows(prof, claim, others, ran if claim in ("each fusion part helps", "the encoders matter") else None)
    rows += region_rows(prof, ig_steps) + sex_rows(prof) + transfer_rows(prof)
    table = pd.DataFrame(rows)
    table.insert(1, "claim verdict", table.groupby("claim", sort=False)["verdict"].transform(
        lambda s: overall([{"verdict": v} for v in s])))
    return table.set_index(["claim", "claim verdict", "evidence"])
