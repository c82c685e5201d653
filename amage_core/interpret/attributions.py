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
- ``gate`` (N, G): the gate values.

Integrated Gradients here integrates along the straight path from a zero baseline with ``steps``
midpoint samples; the graph structure (edges, weights) is held fixed, only node features are scaled.
Results are written to ``<run>/attributions/`` as .npy files (no pickle) and reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from amage_core import io
from amage_core.config import GraphConfig, ModelConfig, from_dict

ARRAYS = ("roi_ig", "roi_score", "network_score", "t1_ig", "t1_saliency", "t1_ig_region", "gate")


@dataclass
class Attributions:
    participant_id: list[str]
    fold: list[str]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray | None:
        return self.arrays.get(name)


def fold_models(run_path: Path, cohort):
    """(fold name, model with its best weights, test rows of ``cohort``) for each fold of a run."""
    from amage_core.models import build_model
    from amage_core.train.dataset import input_spec
    from amage_core.train.loop import load_checkpoint

    config = io.read_json(run_path / "config.json")
    model_cfg = from_dict(ModelConfig, config["model"])
    ids = cohort.participants["participant_id"].astype(str).to_numpy()
    position = {pid: i for i, pid in enumerate(ids)}
    for fold_dir in sorted(run_path.glob("fold-*")):
        split = pd.read_csv(fold_dir / "split.tsv", sep="\t", dtype={"participant_id": str})
        test_ids = split.loc[split["role"] == "test", "participant_id"]
        missing = [p for p in test_ids if p not in position]
        if missing:
            raise ValueError(f"{fold_dir}: test participants {missing[:3]} are not in the cohort {cohort.root}")
        checkpoint = load_checkpoint(fold_dir / "checkpoint.pt")
        model = build_model(model_cfg, input_spec(cohort))
        model.load_state_dict(checkpoint["best_model"] or checkpoint["model"])
        model.eval()
        yield fold_dir.name.removeprefix("fold-"), model, np.array([position[p] for p in test_ids])


def integrated_gradients(model, batch, fields: tuple[str, ...], steps: int = 16) -> dict[str, torch.Tensor]:
    """IG of ``model(batch).pred`` (summed over the batch) for each input field, zero baseline.

    Returns tensors shaped like ``batch[field]``: ``x`` (sum_N, F), ``t1`` (B, 1, D, H, W)."""
    inputs = {f: getattr(batch, f).detach() for f in fields}
    total = {f: torch.zeros_like(v) for f, v in inputs.items()}
    for alpha in (torch.arange(steps, dtype=torch.float32) + 0.5) / steps:
        scaled = {f: (v * alpha).requires_grad_(True) for f, v in inputs.items()}
        for f, v in scaled.items():
            setattr(batch, f, v)
        pred = model(batch).pred.sum()
        grads = torch.autograd.grad(pred, list(scaled.values()))
        for f, g in zip(scaled, grads):
            total[f] += g
    for f, v in inputs.items():
        setattr(batch, f, v)
    return {f: inputs[f] * total[f] / steps for f in fields}


def sphere_means(volumes: np.ndarray, affine: np.ndarray, coords: np.ndarray, radius: float) -> np.ndarray:
    """Mean of each volume in a sphere (mm) around each coordinate: (N, D, H, W) -> (N, R).

    A sphere smaller than a voxel takes the nearest voxel; coordinates outside the grid give NaN."""
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
            steps: int = 16, batch_size: int = 8) -> Attributions:
    """Attributions of every held-out participant of ``run`` (see the module docstring); cached."""
    from torch_geometric.loader import DataLoader

    from amage_core.train.dataset import CohortDataset
    from amage_core.train.scaler import AgeScaler

    out_dir = run.path / "attributions"
    if (out_dir / "participants.tsv").is_file():
        return load(out_dir)
    ids = cohort.participants["participant_id"].astype(str).to_numpy()
    coords = cohort.regions[["x", "y", "z"]].to_numpy(dtype=float)
    collected: dict[str, list[np.ndarray]] = {k: [] for k in ARRAYS}
    sums = {"t1_ig": None, "t1_saliency": None}
    pids, folds = [], []
    dummy = AgeScaler(0.0, 100.0, ())
    for name, model, rows in fold_models(run.path, cohort):
        loader = DataLoader(CohortDataset(cohort, rows, graph_cfg, dummy, model.modalities), batch_size=batch_size)
        fields = tuple(f for f, m in (("x", "fmri"), ("t1", "smri")) if m in model.modalities)
        for batch in loader:
            ig = integrated_gradients(model, batch, fields, steps)
            with torch.no_grad():
                output = model(batch)
            pids += list(ids[batch.idx.numpy()])
            folds += [name] * batch.num_graphs
            if "x" in ig:
                collected["roi_ig"].append(ig["x"].abs().sum(-1).reshape(batch.num_graphs, -1).numpy())
            if output.node_scores is not None:
                collected["roi_score"].append(output.node_scores.reshape(batch.num_graphs, -1).numpy())
            if output.network_scores is not None:
                collected["network_score"].append(output.network_scores.numpy())
            if output.gate is not None:
                collected["gate"].append(output.gate.numpy())
            if "t1" in ig:
                t1_abs = ig["t1"].abs()[:, 0].numpy()
                sal = _saliency(model, batch)
                sums["t1_ig"] = t1_abs.sum(0) + (0 if sums["t1_ig"] is None else sums["t1_ig"])
                sums["t1_saliency"] = sal.sum(0) + (0 if sums["t1_saliency"] is None else sums["t1_saliency"])
                if t1_grid is not None:
                    collected["t1_ig_region"].append(sphere_means(t1_abs, t1_grid, coords, radius))
    arrays = {k: np.concatenate(v).astype(np.float32) for k, v in collected.items() if v}
    arrays.update({k: (v / len(pids)).astype(np.float32) for k, v in sums.items() if v is not None})
    result = Attributions(pids, folds, arrays)
    save(result, out_dir)
    return result


def _saliency(model, batch) -> np.ndarray:
    t1 = batch.t1.detach().clone().requires_grad_(True)
    original = batch.t1
    batch.t1 = t1
    (grad,) = torch.autograd.grad(model(batch).pred.sum(), [t1])
    batch.t1 = original
    return grad.abs()[:, 0].numpy()


def save(attr: Attributions, out_dir: Path) -> None:
    for name, array in attr.arrays.items():
        io.write_npy(out_dir / f"{name}.npy", array)
    # written last: its presence marks a complete set
    io.write_tsv(out_dir / "participants.tsv", pd.DataFrame({"participant_id": attr.participant_id, "fold": attr.fold}))


def load(out_dir: Path) -> Attributions:
    table = pd.read_csv(out_dir / "participants.tsv", sep="\t", dtype=str)
    arrays = {p.stem: np.asarray(io.load_npy(p, mmap=False)) for p in out_dir.glob("*.npy")}
    return Attributions(list(table["participant_id"]), list(table["fold"]), arrays)
