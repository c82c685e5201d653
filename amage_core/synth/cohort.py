"""Generate a synthetic lifespan cohort with known ground truth, and read the truth back.

``generate_cohort(cfg, out)`` writes a BIDS dataset with fMRIPrep- and XCP-D-style derivatives
(layout: ``book/architecture.md`` section 1) and the ground truth under ``derivatives/truth/``:

* ``participants_truth.tsv``: participant_id, age, sex, brain_age, brain_age_gap, smri_deviation,
  fmri_deviation, smri_age, fmri_age, has_bold_nifti, head_scale, mean_fd
* ``regions_truth.tsv``: one row per region of ``cfg.atlas`` (index, name, network, x, y, z), its
  structural ageing (GM loss per decade, late-life acceleration, male/female rate ratio, sex GM
  offset, hotspot flag) and functional ageing (network effect, loading and its decline, expected
  within-network FC change per decade, female minus male loading)
* ``networks_truth.tsv``: per network the loading parameters and the expected within/between FC
  at ages 20/50/80 by sex
* ``maps/``: NIfTI maps on the T1 grid: GM loss per decade, late-life acceleration, male/female
  rate ratio, male minus female GM offset
* ``effects.json``: every effect size used; ``oracle.json``: the oracle, an unreachable bound
  (``population``, ``cohort``; :mod:`amage_core.synth.oracle`), the reachable ``floor``
  (:mod:`amage_core.synth.floor`) and the median-age guess's MAE; ``config.json``: the
  configuration, written last (a complete run)

Randomness comes from ``numpy.random.SeedSequence([seed, stream, participant])``, so the files do
not depend on ``n_jobs`` and the same seed gives byte-identical files.
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from amage_core.config import SynthConfig, to_dict
from amage_core.data.atlas import Atlas, load_atlas
from amage_core.io import read_json, stable_hash, write_json
from amage_core.synth import anatomy, bids, bold, function
from amage_core.synth.latent import STREAM_ANATOMY, STREAM_BOLD, STREAM_FUNCTION, rng_for, sample_participants
from amage_core.synth.presets import Preset, get_preset

GENERATOR = "amage synth"
TRUTH_TABLES = ("participants_truth.tsv", "regions_truth.tsv", "networks_truth.tsv")
MAP_NAMES = {
    "gm_loss_per_decade": "rate_linear",
    "gm_acceleration": "rate_quadratic",
    "male_rate_ratio": "male_ratio",
    "sex_gm_offset": "sex_offset",
}
ORACLE_DRAWS = 20000


@dataclass
class Truth:
    """The ground truth of a synthetic cohort (see the module docstring for the columns)."""

    root: Path
    participants: pd.DataFrame
    regions: pd.DataFrame
    networks: pd.DataFrame
    oracle: dict
    effects: dict
    config: dict
    maps: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Context:
    """Everything a worker needs; built once in the parent."""

    cfg: SynthConfig
    preset: Preset
    root: Path
    n_volumes: int
    tr: float
    anatomy_model: anatomy.AnatomyModel
    bold_model: bold.BoldModel
    atlas: Atlas
    networks: pd.DataFrame
    extra: dict[str, tuple[Atlas, np.ndarray]]   # atlas name -> (atlas, (R_extra, R) weights)


def resolved(cfg: SynthConfig) -> tuple[Preset, int, float]:
    """The preset and the effective (n_volumes, tr) of ``cfg``."""
    preset = get_preset(cfg.preset)
    n_volumes = cfg.n_volumes if cfg.n_volumes is not None else preset.n_volumes
    tr = cfg.tr if cfg.tr is not None else preset.tr
    if n_volumes < 20:
        raise ValueError(f"synth: n_volumes must be at least 20, got {n_volumes}")
    if tr <= 0:
        raise ValueError(f"synth: tr must be positive, got {tr}")
    if cfg.bold_voxel_size <= 0 or cfg.voxel_size <= 0:
        raise ValueError(f"synth: voxel sizes must be positive, got {cfg.voxel_size} and {cfg.bold_voxel_size}")
    return preset, int(n_volumes), float(tr)


def bold_voxel_size(cfg: SynthConfig) -> float:
    """Voxel size (mm) of the BOLD NIfTI grid."""
    return float(cfg.bold_voxel_size)


def generate_cohort(cfg: SynthConfig, out: Path, n_jobs: int = 1, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write the cohort described by ``cfg`` to ``out`` and return ``out``.

    A complete earlier run with the same configuration is kept as it is. A folder holding anything
    else is refused unless it is an earlier synthetic cohort and ``overwrite`` is true.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    out = Path(out)
    preset, n_volumes, tr = resolved(cfg)
    config_hash = stable_hash(to_dict(cfg))
    if _prepare_folder(out, config_hash, overwrite):
        return out

    atlas = load_atlas(cfg.atlas)
    networks = function.network_table(atlas)
    participants = sample_participants(cfg, preset)
    anatomy_model = anatomy.build_anatomy_model(float(cfg.voxel_size))
    bold_model = bold.build_bold_model(bold_voxel_size(cfg), atlas)
    bold_model.means, bold_model.gram   # computed once here, shipped to the workers
    extra = {}
    for name in cfg.extra_atlases:
        if name.lower() == cfg.atlas.lower():
            continue
        target = load_atlas(name)
        extra[name] = (target, bold.extra_atlas_weights(bold_voxel_size(cfg), atlas, target))
    ctx = _Context(cfg, preset, out, n_volumes, tr, anatomy_model, bold_model, atlas, networks, extra)

    bids.write_descriptions(out, f"Synthetic {cfg.preset} lifespan cohort (seed {cfg.seed})",
                            {"Name": GENERATOR, "Description": "amage_core.synth"})
    public = participants[["participant_id", "age", "sex"]]
    bids.write_table(out / "participants.tsv", public, float_format="%.1f")

    rows = list(participants.itertuples(index=True))
    chunk = max(1, min(16, int(np.ceil(len(rows) / (4 * max(1, n_jobs))))))
    chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
    results: list[dict] = []
    bar = tqdm(total=len(rows), desc=f"synth {cfg.preset}", unit="participant", disable=not progress,
               file=sys.stderr)
    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    for part in runner(delayed(_make_chunk)(ctx, c) for c in chunks):
        results.extend(part)
        bar.update(len(part))
    bar.close()

    extras = pd.DataFrame(results)
    participants = participants.merge(extras, on="participant_id", how="left")
    _write_truth(ctx, participants)
    write_json(out / "derivatives" / "truth" / "config.json", {
        "config": to_dict(cfg), "config_hash": config_hash, "preset": dataclasses.asdict(preset),
        "n_volumes": n_volumes, "tr": tr, "bold_voxel_size": bold_voxel_size(cfg),
        "atlases": [cfg.atlas] + list(extra), "generator": GENERATOR,
    })
    return out


def _prepare_folder(out: Path, config_hash: str, overwrite: bool) -> bool:
    """True when ``out`` already holds this exact cohort; otherwise make it ready to write."""
    marker = out / "derivatives" / "truth" / "config.json"
    description = out / "dataset_description.json"
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file; --out must be a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return False
    ours = description.is_file() and read_json(description).get("GeneratedBy", [{}])[0].get("Name") == GENERATOR
    if not ours:
        raise ValueError(f"{out}: folder is not empty and is not a synthetic cohort; choose another --out")
    if marker.is_file() and read_json(marker).get("config_hash") == config_hash:
        return True
    if marker.is_file() and not overwrite:
        raise ValueError(f"{out}: holds a synthetic cohort with another configuration; "
                         "use --overwrite or another --out")
    shutil.rmtree(out)         # an interrupted or replaced synthetic cohort of ours
    out.mkdir(parents=True)
    return False


def _make_chunk(ctx: _Context, rows: list) -> list[dict]:
    return [_make_participant(ctx, row) for row in rows]


def _make_participant(ctx: _Context, row) -> dict:
    """Write every file of one participant; return what the truth tables need."""
    cfg, preset, index = ctx.cfg, ctx.preset, int(row.Index)
    files = bids.paths(ctx.root, row.participant_id, [cfg.atlas] + list(ctx.extra))

    rng = rng_for(cfg.seed, STREAM_ANATOMY, index)
    person = anatomy.sample_person(row.smri_age, row.sex, rng)
    t1, mask = anatomy.synthesize_t1(ctx.anatomy_model, preset, person, rng)
    bids.write_nifti_gz(files["t1"], t1, ctx.anatomy_model.affine)
    bids.write_nifti_gz(files["mask"], mask, ctx.anatomy_model.affine)

    rng = rng_for(cfg.seed, STREAM_FUNCTION, index)
    fs = function.simulate_function(ctx.atlas, ctx.networks, preset, ctx.n_volumes, ctx.tr,
                                    row.fmri_age, row.age, row.sex, rng)
    scale = 0.01 * preset.bold_s0
    names = list(ctx.atlas.regions["name"])
    bids.write_table(files[f"timeseries:{cfg.atlas}"], pd.DataFrame(scale * fs.percent, columns=names), "%.5g")
    for name, (target, weights) in ctx.extra.items():
        series = bold.extra_atlas_percent(weights, fs, ctx.tr, rng)
        bids.write_table(files[f"timeseries:{name}"],
                         pd.DataFrame(scale * series, columns=list(target.regions["name"])), "%.5g")
    nuis = bold.simulate_nuisance(fs, ctx.n_volumes, ctx.tr, rng)
    confounds = bold.confounds_table(ctx.bold_model, fs, nuis, preset, ctx.tr)
    bids.write_table(files["confounds"], confounds)
    write_json(files["confounds_json"], {
        "framewise_displacement": {"Description": "Power et al. (2012) FD, head radius 50 mm", "Units": "mm"},
        "GeneratedBy": GENERATOR,
    })
    if row.has_bold_nifti:
        percent = bold.voxel_percent(ctx.bold_model, fs, nuis)
        data = bold.bold_image_data(ctx.bold_model, preset, percent, rng_for(cfg.seed, STREAM_BOLD, index))
        vs = bold_voxel_size(cfg)
        bids.write_nifti_gz(files["bold"], data, ctx.bold_model.affine, zooms=(vs, vs, vs, ctx.tr))
        write_json(files["bold_json"], {"RepetitionTime": ctx.tr, "TaskName": "rest", "SkullStripped": False})
    return {"participant_id": row.participant_id, "head_scale": person.head_scale,
            "mean_fd": float(np.mean(fs.fd[1:]))}


def _sphere_mean(values: np.ndarray, model: anatomy.AnatomyModel, coords: np.ndarray, radius: float) -> np.ndarray:
    """(R,) mean of a (X, Y, Z) map over each sphere (the nearest voxel when the sphere is empty)."""
    from scipy.spatial import cKDTree

    inside = model.gm > 0.2
    xyz = np.moveaxis(anatomy.world_coords(model.shape, model.affine), 0, -1)
    tree = cKDTree(xyz[inside])
    vals = values[inside]
    out = np.empty(len(coords))
    for i, c in enumerate(coords):
        idx = tree.query_ball_point(c, radius)
        out[i] = vals[idx].mean() if idx else vals[tree.query(c)[1]]
    return out


def _write_truth(ctx: _Context, participants: pd.DataFrame) -> None:
    from amage_core.synth import floor, oracle

    cfg, preset, model = ctx.cfg, ctx.preset, ctx.anatomy_model
    truth = ctx.root / "derivatives" / "truth"
    bids.write_table(truth / "participants_truth.tsv", participants)

    regions = ctx.atlas.regions.copy()
    radius = max(ctx.atlas.radius_mm, model.voxel_size)
    for col, attr in [("smri_gm_loss_per_decade", "rate_linear"), ("smri_gm_acceleration", "rate_quadratic"),
                      ("smri_male_rate_ratio", "male_ratio"), ("smri_sex_gm_offset", "sex_offset")]:
        regions[col] = _sphere_mean(getattr(model, attr), model, ctx.atlas.coords, radius)
    regions["smri_hotspot"] = regions["smri_gm_loss_per_decade"] > anatomy.BASE_LINEAR + 0.008
    per_region = ctx.networks.set_index("network").reindex(regions["network"]).reset_index(drop=True)
    regions["fmri_effect"] = per_region["effect"].to_numpy()
    regions["fmri_loading_50"] = per_region["loading_50"].to_numpy()
    regions["fmri_loading_decline_per_decade"] = per_region["decline_per_decade"].to_numpy()
    regions["fmri_within_fc_change_per_decade"] = (-2 * per_region["loading_50"] * per_region["decline_per_decade"]).to_numpy()
    regions["fmri_female_minus_male_loading"] = per_region["female_offset"].to_numpy()
    regions["fmri_male_decline_ratio"] = per_region["male_decline_ratio"].to_numpy()
    bids.write_table(truth / "regions_truth.tsv", regions)

    nets = ctx.networks.copy()
    for sex in ("F", "M"):
        for age in (20, 50, 80):
            lam = function.expected_loading(ctx.networks, float(age), sex)
            nets[f"within_fc_{sex}_{age}"] = lam ** 2
            nets[f"between_fc_{sex}_{age}"] = lam * np.mean(lam) * function.expected_coupling(float(age))
    bids.write_table(truth / "networks_truth.tsv", nets)

    for fname, attr in MAP_NAMES.items():
        data = (getattr(model, attr) * (model.gm > 0.2)).astype(np.float32)
        bids.write_nifti_gz(truth / "maps" / f"{fname}.nii.gz", data, model.affine)

    write_json(truth / "effects.json", effects_dict())
    sds = {"brain_age": cfg.brain_age_sd, "smri": cfg.smri_deviation_sd, "fmri": cfg.fmri_deviation_sd}
    latent = {"smri": participants["smri_age"].to_numpy(), "fmri": participants["fmri_age"].to_numpy()}
    age = participants["age"].to_numpy()
    write_json(truth / "oracle.json", {
        "assumptions": oracle.ASSUMPTIONS,
        "latent_sds": sds,
        "population": oracle.monte_carlo_oracle(preset, sds, ORACLE_DRAWS, seed=cfg.seed),
        "cohort": oracle.cohort_oracle(age, latent, sds, preset),
        "floor": floor.monte_carlo_floor(preset, sds, ctx.atlas, ctx.networks, floor.FLOOR_DRAWS, seed=cfg.seed),
        "median_age_predictor_mae": float(np.mean(np.abs(age - np.median(age)))),
    })


def effects_dict() -> dict:
    """Every effect size of the generator, as plain data (``effects.json``)."""
    return {
        "anatomy": {
            "base_gm_loss_per_decade": anatomy.BASE_LINEAR, "base_gm_acceleration": anatomy.BASE_QUADRATIC,
            "onset_linear": anatomy.ONSET_LINEAR, "onset_quadratic": anatomy.ONSET_QUADRATIC,
            "hotspots": [dataclasses.asdict(h) for h in anatomy.HOTSPOTS + anatomy.SPARED],
            "sex_gm_offsets": [{"name": n, "centre": c, "sigma": s, "male_minus_female": v}
                               for n, c, s, v in anatomy.SEX_OFFSETS],
            "head_scale_sex": anatomy.HEAD_SCALE_SEX, "head_scale_sd": anatomy.HEAD_SCALE_SD,
            "deform_mm": anatomy.DEFORM_MM, "gm_variation_sd": anatomy.GM_VARIATION_SD,
            "wm_loss_per_decade_after_45": anatomy.WM_LOSS_PER_DECADE,
            "wm_contrast_per_decade": anatomy.WM_CONTRAST_PER_DECADE,
            "ventricle_linear_mm": anatomy.VENTRICLE_LINEAR_MM,
            "ventricle_quadratic_mm": anatomy.VENTRICLE_QUADRATIC_MM,
        },
        "function": {
            "networks": [dataclasses.asdict(n) for n in function.NETWORK_AGING + (function.OTHER_NETWORK,)],
            "coupling_50": function.COUPLING_50, "coupling_per_decade": function.COUPLING_PER_DECADE,
            "loading_sd": function.LOADING_SD, "coupling_sd": function.COUPLING_SD,
            "motion_residual_per_mm": function.MOTION_RESIDUAL, "fd_log_sd": function.FD_LOG_SD,
        },
    }


def load_truth(root: Path) -> Truth:
    """Read ``<root>/derivatives/truth`` of a generated cohort."""
    root = Path(root)
    truth = root / "derivatives" / "truth"
    if not (truth / "config.json").is_file():
        raise FileNotFoundError(f"{truth / 'config.json'}: missing; {root} is not a complete synthetic cohort")
    tables = {}
    for name in TRUTH_TABLES:
        path = truth / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing truth table")
        tables[name] = pd.read_csv(path, sep="\t", na_values="n/a")
    maps = {name: truth / "maps" / f"{name}.nii.gz" for name in MAP_NAMES}
    config = read_json(truth / "config.json")
    oracle = read_json(truth / "oracle.json")
    if "floor" not in oracle:     # generated before the floor existed: computed now (seconds), not written
        oracle["floor"] = _floor_of(config, oracle["latent_sds"])
        oracle["floor"]["computed_on_read"] = True
    return Truth(root=root, participants=tables["participants_truth.tsv"], regions=tables["regions_truth.tsv"],
                 networks=tables["networks_truth.tsv"], oracle=oracle,
                 effects=read_json(truth / "effects.json"), config=config, maps=maps)


_FLOORS: dict[tuple, dict] = {}


def _floor_of(config: dict, sds: dict[str, float]) -> dict:
    """The floor of a generated cohort from its ``config.json`` (as :func:`_write_truth` computes it;
    kept for the process, so reading the truth again costs nothing)."""
    from amage_core.synth import floor

    cfg = config["config"]
    key = (cfg["preset"], cfg["atlas"], int(cfg["seed"]), tuple(sorted(sds.items())))
    if key not in _FLOORS:
        _FLOORS[key] = floor.monte_carlo_floor(get_preset(cfg["preset"]), sds, load_atlas(cfg["atlas"]),
                                               n_draws=floor.FLOOR_DRAWS, seed=int(cfg["seed"]))
    return dict(_FLOORS[key])
