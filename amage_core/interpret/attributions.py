"""Attributions of a trained cross-validation run, per held-out participant.

Every participant is explained by the fold model that did **not** train on them (its test fold), so
attributions are out-of-sample like the predictions. For each participant:

- ``roi_ig`` (N, R): Integrated Gradients (Sundararajan et al. 2017) of the predicted age with respect
  to the node features (connectivity rows), absolute values summed over each ROI's features;
- ``roi_score`` (N, R): the model's own ROI weights (attention pooling / node scores), when it has them;
- ``network_score`` (N, K): the weight of each functional network in the brain-level readout;
- ``t1_ig`` (D, H, W): mean over participants of |Integrated Gradients| on the T1 volume;
- ``t1_saliency`` (D, H, W): mean over participants of |d predicted age / d T1|, the authors' saliency
  (they differentiate the loss; the loss gradient is this one times 2(pred - y), so the maps differ only
  by a per-participant weight);
- ``t1_ig_region`` (N, R): |IG| on T1 averaged in a sphere around each atlas region;
- ``gate`` (N, G): the gate values;
- ``ig_delta`` (N,): captum's convergence delta of IG, the attributions' sum (all inputs) minus
  ``ig_change``; ``ig_change`` (N,): predicted age at the input minus at the baseline (model units).
  By the completeness axiom the delta is 0; it measures the integration error of ``steps`` points
  (:func:`amage_core.interpret.regions.convergence_table` summarises it).

Integrated Gradients is captum's ``IntegratedGradients`` along the straight path from a zero baseline
with ``steps`` midpoint samples (``method="riemann_middle"``; captum's default, Gauss-Legendre, samples
other points), one step of the batch per forward pass; the graph structure (edges, weights) is held
fixed, only node features are scaled. Saliency is captum's ``Saliency`` (absolute gradient).
Results are written to ``<run>/attributions/`` as .npy files (no pickle) with the settings they were
computed with (``settings.json``), and reused while those settings hold.

Occlusion sensitivity (:func:`compute_occlusion`, MONAI's ``monai.visualize.OcclusionSensitivity``) is
costlier (one forward pass per patch position), so it explains an age-spread subset of each fold's
held-out participants, again with the fold model that did not train on them:

- ``t1_occlusion`` (D, H, W): mean over those participants of |predicted age with a Gaussian patch
  occluded around the voxel - predicted age| (model units, as IG), the participant's fMRI graph fixed
  (:class:`T1Only`);
- ``t1_occlusion_region`` (n, R): that map averaged in the sphere around each atlas region.

It lives in ``<run>/attributions/occlusion-<hash of its settings>/``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from torch import nn

from amage_core import io
from amage_core.config import GraphConfig, TrainConfig
from amage_core.parallel import map_folds

ARRAYS = ("roi_ig", "roi_score", "network_score", "t1_ig", "t1_saliency", "t1_ig_region", "gate",
          "ig_delta", "ig_change")
T1_SUMS = ("t1_ig", "t1_saliency")      # averaged over participants; the others are per participant
IG_METHOD = "riemann_middle"            # captum's name for the midpoint rule


@dataclass
class Attributions:
    participant_id: list[str]
    fold: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)


def fold_models(run_path: Path, cohort):
    """(fold name, model with its kept weights, test rows of ``cohort``) for each fold of a run
    (:mod:`amage_core.train.rundir`'s readers)."""
    from amage_core.train.rundir import fold_model, fold_rows, run_fold_names

    for name in run_fold_names(run_path):
        rows = fold_rows(run_path, name, cohort, "test")
        yield name, fold_model(run_path, name, cohort), rows


def batch_function(model, batch, fields: tuple[str, ...]):
    """``model`` as captum calls it: a function of some fields of ``batch``, each with the participants
    first, the rest of the batch (edges, other modalities) held fixed.

    Shapes: forward(x (B, R, F), t1 (B, 1, D, H, W)) -> (B,) predicted age (model units), in the
    order of ``fields``. Every graph of the batch has the same R nodes (one per atlas region)."""
    def forward(*values: torch.Tensor) -> torch.Tensor:
        for f, v in zip(fields, values):
            setattr(batch, f, v.reshape(-1, v.shape[-1]) if f == "x" else v)
        return model(batch).pred

    return forward


def _per_participant(batch, field: str) -> torch.Tensor:
    """``batch.<field>`` with the participants first: ``x`` (sum_N, F) -> (B, R, F)."""
    value = getattr(batch, field).detach()
    if field != "x":
        return value
    if value.shape[0] % batch.num_graphs:
        raise ValueError(f"{value.shape[0]} nodes in {batch.num_graphs} graphs: graphs of different sizes")
    return value.reshape(batch.num_graphs, -1, value.shape[-1])


def integrated_gradients(model, batch, fields: tuple[str, ...], steps: int = 16, return_delta: bool = False):
    """IG of ``model(batch).pred`` for each input field, zero baseline, ``steps`` (>= 2) midpoints.

    Returns tensors shaped like ``batch[field]``: ``x`` (sum_N, F), ``t1`` (B, 1, D, H, W); with
    ``return_delta`` also captum's convergence delta per participant, (B,)."""
    from captum.attr import IntegratedGradients

    if steps < 2:
        raise ValueError(f"Integrated Gradients needs at least 2 steps, got {steps}")
    originals = {f: getattr(batch, f) for f in fields}
    inputs = tuple(_per_participant(batch, f) for f in fields)
    try:
        ig, delta = IntegratedGradients(batch_function(model, batch, fields)).attribute(
            inputs, n_steps=steps, method=IG_METHOD, internal_batch_size=batch.num_graphs,
            return_convergence_delta=True)
    finally:
        for f, v in originals.items():
            setattr(batch, f, v)
    out = {f: a.detach().reshape(originals[f].shape) for f, a in zip(fields, ig)}
    return (out, delta.detach()) if return_delta else out


def sphere_means(volumes: np.ndarray, affine: np.ndarray, coords: np.ndarray, radius: float) -> np.ndarray:
    """Mean of each volume in a sphere (mm) around each coordinate: (N, D, H, W) -> (N, R).

    A sphere smaller than a voxel takes the nearest voxel (all of them when several are equally near);
    coordinates outside the grid give NaN. Not nilearn's ``NiftiSpheresMasker``: it keeps one of
    equally near voxels (the region means differ on grids coarser than the radius) and refuses a
    coordinate outside the grid."""
    shape = volumes.shape[1:]
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    flat = volumes.reshape(len(volumes), -1)
    out = np.full((len(volumes), len(coords)), np.nan)
    for r, c in enumerate(coords):
        d = np.linalg.norm(world - c, axis=1)
        inside = d <= max(radius, d.min())
        if d.min() <= 2 * abs(affine[0, 0]):
            out[:, r] = flat[:, inside].mean(axis=1)
    return out


def compute(run, cohort, graph_cfg: GraphConfig, t1_grid: np.ndarray | None, radius: float,
            steps: int = 16, batch_size: int = 8, train_cfg: TrainConfig | None = None) -> Attributions:
    """Attributions of every held-out participant of ``run`` (see the module docstring); cached.

    The folds are explained in ``train_cfg.fold_workers`` processes with ``cpu_threads`` threads
    (:func:`~amage_core.parallel.map_folds`; default: one process)."""
    out_dir = run.path / "attributions"
    settings = {"steps": steps, "radius": radius, "ig": f"captum {IG_METHOD}"}
    if (out_dir / "participants.tsv").is_file():
        # a set computed before settings.json was written is taken as it is
        if not (out_dir / "settings.json").is_file() or io.read_json(out_dir / "settings.json") == settings:
            return load(out_dir)
    coords = cohort.regions[["x", "y", "z"]].to_numpy(dtype=float)
    names, jobs = [], []
    for name, model, rows in fold_models(run.path, cohort):
        names.append(name)
        jobs.append((model, rows, cohort, graph_cfg, t1_grid, coords, radius, steps, batch_size))
    parts = map_folds(_fold_attributions, jobs, train_cfg or TrainConfig(), progress=False)
    ids = cohort.participants["participant_id"].astype(str).to_numpy()
    pids = [p for part in parts for p in ids[part["rows"]]]
    folds = [name for name, part in zip(names, parts) for _ in part["rows"]]
    arrays = {k: np.concatenate([part[k] for part in parts]).astype(np.float32)
              for k in ARRAYS if k not in T1_SUMS and all(k in part for part in parts)}
    for key in T1_SUMS:
        if all(key in part for part in parts):
            arrays[key] = (sum(part[key] for part in parts) / len(pids)).astype(np.float32)
    result = Attributions(pids, folds, arrays)
    io.write_json(out_dir / "settings.json", settings)
    save(result, out_dir)
    return result


def _fold_attributions(model, rows, cohort, graph_cfg, t1_grid, coords, radius, steps, batch_size,
                       progress) -> dict[str, np.ndarray]:
    """One fold model's attributions of its held-out ``rows``: per-participant arrays (in batch
    order, with ``rows``) and the sums of the T1 maps."""
    from torch_geometric.loader import DataLoader

    from amage_core.train.dataset import CohortDataset
    from amage_core.train.scaler import AgeScaler

    loader = DataLoader(CohortDataset(cohort, rows, graph_cfg, AgeScaler.identity(), model.modalities),
                        batch_size=batch_size)
    fields = tuple(f for f, m in (("x", "fmri"), ("t1", "smri")) if m in model.modalities)
    collected: dict[str, list[np.ndarray]] = {"rows": []}
    sums: dict[str, np.ndarray] = {}

    def add(key, value):
        collected.setdefault(key, []).append(value)

    for batch in loader:
        ig, delta = integrated_gradients(model, batch, fields, steps, return_delta=True)
        with torch.no_grad():
            output = model(batch)
        add("rows", batch.idx.numpy())
        total = sum(ig[f].reshape(batch.num_graphs, -1).sum(1) for f in fields)
        add("ig_delta", delta.numpy())
        add("ig_change", (total - delta).numpy())
        if "x" in ig:
            add("roi_ig", ig["x"].abs().sum(-1).reshape(batch.num_graphs, -1).numpy())
        if output.node_scores is not None:
            add("roi_score", output.node_scores.reshape(batch.num_graphs, -1).numpy())
        if output.network_scores is not None:
            add("network_score", output.network_scores.numpy())
        if output.gate is not None:
            add("gate", output.gate.numpy())
        if "t1" in ig:
            t1_abs = ig["t1"].abs()[:, 0].numpy()
            for key, value in (("t1_ig", t1_abs), ("t1_saliency", saliency(model, batch))):
                sums[key] = value.sum(0) + sums.get(key, 0)
            if t1_grid is not None:
                add("t1_ig_region", sphere_means(t1_abs, t1_grid, coords, radius))
    return {**{k: np.concatenate(v) for k, v in collected.items()}, **sums}


def saliency(model, batch) -> np.ndarray:
    """|d predicted age / d T1| of each participant (captum's ``Saliency``): (B, D, H, W)."""
    from captum.attr import Saliency

    original = batch.t1
    try:
        t1 = original.detach().requires_grad_(True)
        grad = Saliency(batch_function(model, batch, ("t1",))).attribute(t1, abs=True)
    finally:
        batch.t1 = original
    return grad.detach()[:, 0].numpy()


def save(attr: Attributions, out_dir: Path) -> None:
    for name, array in attr.arrays.items():
        io.write_npy(out_dir / f"{name}.npy", array)
    # written last: its presence marks a complete set
    io.write_tsv(out_dir / "participants.tsv", pd.DataFrame({"participant_id": attr.participant_id, "fold": attr.fold}))


def load(out_dir: Path) -> Attributions:
    table = pd.read_csv(out_dir / "participants.tsv", sep="\t", dtype=str)
    arrays = {p.stem: np.asarray(io.load_npy(p, mmap=False)) for p in out_dir.glob("*.npy")}
    return Attributions(list(table["participant_id"]), list(table["fold"]), arrays)


class T1Only(nn.Module):
    """``model`` as a function of the T1 alone: the other inputs of one participant (its fMRI graph)
    are held fixed, so image tools (``monai.visualize``) can perturb the T1.

    ``data`` is the participant's ``Data`` (as :class:`~amage_core.train.dataset.CohortDataset` gives
    it). A model with ``encode_fmri`` / ``readout`` (:class:`~amage_core.models.amagenet.BrainAgeModel`)
    encodes the fixed graph once; any other model gets a batch of copies of the participant.
    Shapes: forward(t1 (n, 1, D, H, W)) -> (n, 1) predicted age (model units)."""

    def __init__(self, model: nn.Module, data) -> None:
        from torch_geometric.data import Batch

        super().__init__()
        self.model = model
        self.data = data
        self._batches: dict[int, object] = {}
        self.fmri = None
        self.split = all(hasattr(model, a) for a in ("encode_fmri", "readout", "smri_encoder"))
        if self.split:
            with torch.no_grad():
                self.fmri = model.encode_fmri(Batch.from_data_list([data]))

    def forward(self, t1: torch.Tensor) -> torch.Tensor:
        from torch_geometric.data import Batch

        from amage_core.models.spec import GraphEncoding

        n = len(t1)
        if self.split:
            fmri = None
            if self.fmri is not None:
                f = self.fmri
                fmri = GraphEncoding(tokens=f.tokens.expand(n, -1, -1), embedding=f.embedding.expand(n, -1),
                                     mask=None if f.mask is None else f.mask.expand(n, -1))
            return self.model.readout(fmri, self.model.smri_encoder(t1)).pred[:, None]
        if n not in self._batches:
            self._batches[n] = Batch.from_data_list([self.data] * n)
        batch = self._batches[n]
        batch.t1 = t1
        return self.model(batch).pred[:, None]


def occlusion_map(model: nn.Module, data, mask_size: int = 8, overlap: float = 0.5,
                  n_batch: int = 16) -> np.ndarray:
    """|pred(T1 with a Gaussian patch occluded) - pred(T1)| for one participant: (D, H, W).

    ``monai.visualize.OcclusionSensitivity`` slides a ``mask_size`` patch (voxels) with ``overlap``;
    in its ``gaussian`` mode the patch is multiplied by 1 - a Gaussian (0 at its centre: the zero
    baseline of IG) and the patch predictions are blended with Gaussian weights."""
    from monai.visualize import OcclusionSensitivity

    wrapper = T1Only(model, data).eval()
    t1 = data.t1.detach()
    occlusion = OcclusionSensitivity(wrapper, mask_size=mask_size, n_batch=n_batch, mode="gaussian",
                                     overlap=overlap, activate=False, verbose=False)
    with torch.no_grad(), warnings.catch_warnings():
        # MONAI 1.6 indexes with lists, which torch >= 2.8 warns about on every patch
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        full = wrapper(t1)[0, 0]
        occluded, _ = occlusion(t1)
    occluded = occluded.as_tensor() if hasattr(occluded, "as_tensor") else occluded  # MetaTensor
    return (occluded[0, 0] - full).abs().numpy()


def spread_by_age(rows: np.ndarray, ages: np.ndarray, k: int) -> np.ndarray:
    """``k`` of ``rows`` evenly spaced in age (all of them when ``k`` >= their number), in row order."""
    rows = np.asarray(rows)
    if k >= len(rows):
        return rows
    order = rows[np.argsort(ages[rows], kind="stable")]
    return np.sort(order[np.round(np.linspace(0, len(rows) - 1, k)).astype(int)])


def compute_occlusion(run, cohort, graph_cfg: GraphConfig, t1_grid: np.ndarray | None, radius: float,
                      per_fold: int = 8, mask_size: int = 8, overlap: float = 0.5,
                      n_batch: int = 16, train_cfg: TrainConfig | None = None) -> Attributions:
    """Occlusion sensitivity of the T1 (see the module docstring) for ``per_fold`` held-out
    participants of each fold (spread over the fold's age range), each explained by its fold's model;
    cached per setting. Folds run as in :func:`compute`."""
    settings = {"per_fold": per_fold, "mask_size": mask_size, "overlap": overlap, "radius": radius}
    out_dir = run.path / "attributions" / f"occlusion-{io.stable_hash(settings)}"
    if (out_dir / "participants.tsv").is_file():
        return load(out_dir)
    ids = cohort.participants["participant_id"].astype(str).to_numpy()
    ages = cohort.participants["age"].to_numpy(dtype=float)
    coords = cohort.regions[["x", "y", "z"]].to_numpy(dtype=float)
    names, jobs = [], []
    for name, model, rows in fold_models(run.path, cohort):
        if "smri" not in model.modalities:
            raise ValueError(f"{run.path}: a model without a T1 branch has no T1 occlusion map")
        names.append(name)
        jobs.append((model, spread_by_age(rows, ages, per_fold), cohort, graph_cfg, mask_size, overlap, n_batch))
    maps = np.concatenate(map_folds(_fold_occlusion, jobs, train_cfg or TrainConfig(), progress=False))
    pids = [p for job in jobs for p in ids[job[1]]]
    folds = [name for name, job in zip(names, jobs) for _ in job[1]]
    arrays = {"t1_occlusion": maps.mean(0).astype(np.float32)}
    if t1_grid is not None:
        arrays["t1_occlusion_region"] = sphere_means(maps, t1_grid, coords, radius).astype(np.float32)
    result = Attributions(pids, folds, arrays)
    io.write_json(out_dir / "settings.json", settings)
    save(result, out_dir)
    return result


def _fold_occlusion(model, chosen, cohort, graph_cfg, mask_size, overlap, n_batch, progress) -> np.ndarray:
    """(len(chosen), D, H, W) occlusion maps of one fold model's chosen held-out participants."""
    from amage_core.train.dataset import CohortDataset
    from amage_core.train.scaler import AgeScaler

    dataset = CohortDataset(cohort, chosen, graph_cfg, AgeScaler.identity(), model.modalities)
    return np.stack([occlusion_map(model, dataset[i], mask_size, overlap, n_batch) for i in range(len(dataset))])
