"""The run directory (book/architecture.md section 3), shared by deep models and baselines.

```
<run>/config.json            what was run: profile sections, variant, data, seeds, versions, commit
<run>/folds.tsv              participant_id, fold
<run>/predictions.tsv        participant_id, [session], fold, age, predicted_age,
                             predicted_age_corrected, [gate_0 ...]
<run>/metrics.json           amage_core.evaluate.metrics.summarise(predictions)
<run>/done.json              config_hash of the finished run (a re-run with the same hash reuses it)
<run>/fold-<k>/              per fold: predictions.tsv, split.tsv (participant_id, role fit|val|test),
                             scaler.json, bias.json, done.json [+ history.csv, checkpoint.pt]
<run>/fold-<k>/fusion-epochs/  a fusion run whose stage's epochs were chosen on the blend split:
                             that choice's fit (history.csv, checkpoint.pt; train.cv.choose_fusion_epochs)
```
``session`` is written only when a participant has several rows (sessions) in the cohort. In a
cross-cohort run (a fold ensemble) every fold predicts every test participant, ``folds.tsv`` is the
training cohort's, and the run's predictions are the folds' mean, labelled fold ``external``. Folds
may finish in separate processes; whichever finds all folds done assembles the run.

Reading a finished run: :meth:`RunDir.load` or :func:`read_predictions` (its predictions),
:func:`run_config`, :func:`run_fold_names`, and per fold :func:`fold_roles` / :func:`fold_rows` (its
split), :func:`fold_scaler`, :func:`fold_bias`, :func:`fold_fit`, :func:`fold_val_predictions`,
:func:`fold_weights`,
:func:`fold_model` (the kept weights in a model built from the run's configuration) and
:func:`fold_predict` (ages predicted by the fold's model for rows of any compatible cohort: a deep
model's kept weights, or a baseline refit on the fold's training participants). Callers use these
instead of parsing the files.
"""
from __future__ import annotations

import datetime
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from amage_core.io import read_json, stable_hash, write_json, write_tsv
from amage_core.train import distributed

if TYPE_CHECKING:
    from torch import nn

    from amage_core.config import TrainConfig
    from amage_core.data.cohort import PreparedCohort
    from amage_core.evaluate.bias import BiasCorrection
    from amage_core.train.scaler import AgeScaler

EXTERNAL = "external"
FUSION_EPOCHS = "fusion-epochs"     # fold subfolder of the fit that chooses the fusion stage's epochs
VAL_PREDICTIONS = "val_predictions.tsv"     # a fold's predictions of its inner validation participants
_PACKAGES = ("torch", "torch_geometric", "monai", "numpy", "scipy", "pandas", "sklearn", "nilearn")


@dataclass
class RunResult:
    path: Path
    predictions: pd.DataFrame | None   # None until every fold is done
    metrics: dict | None
    complete: bool                     # every fold finished and the run assembled
    reused: bool                       # a finished run with the same configuration was loaded


def cohort_identity(cohort: PreparedCohort | None) -> dict | None:
    """What identifies a prepared cohort's content (not its location): arrays' checksums, ages."""
    if cohort is None:
        return None
    cols = [c for c in ("participant_id", "session", "age", "sex") if c in cohort.participants]
    table = cohort.participants[cols].astype(str).to_numpy().tolist()
    return {"n": int(cohort.n), "arrays": cohort.manifest.get("arrays"), "participants": stable_hash(table)}


def library_versions() -> dict[str, str]:
    import importlib

    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            continue
    return versions


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class RunDir:
    """Reading and writing one run directory; only the main process writes under torchrun."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    # -- the run as a whole ------------------------------------------------------------------
    def start(self, identity: dict, extra: dict[str, Any]) -> str:
        """Record ``identity`` (what determines the results) and ``extra`` in config.json.

        Returns the configuration hash. A folder holding a *different* configuration is refused.
        """
        config_hash = stable_hash(identity)
        config_path = self.path / "config.json"
        if config_path.is_file():
            previous = read_json(config_path).get("config_hash")
            if previous != config_hash:
                raise ValueError(f"{self.path} holds a run with another configuration "
                                 f"({previous} != {config_hash}); choose another --out folder")
        if distributed.context().is_main:
            write_json(config_path, {**identity, **extra, "config_hash": config_hash,
                                     "versions": library_versions(), "git_commit": git_commit(),
                                     "created": datetime.datetime.now().isoformat(timespec="seconds")})
        return config_hash

    def is_done(self, config_hash: str) -> bool:
        done = self.path / "done.json"
        return done.is_file() and read_json(done).get("config_hash") == config_hash

    def load(self, reused: bool = True) -> RunResult:
        return RunResult(self.path, read_predictions(self.path / "predictions.tsv"),
                         read_json(self.path / "metrics.json"), True, reused)

    def write_folds(self, folds: pd.DataFrame) -> None:
        if distributed.context().is_main:
            write_tsv(self.path / "folds.tsv", folds[["participant_id", "fold"]])

    def finish(self, fold_names: list[str], config_hash: str, ensemble: bool = False) -> RunResult:
        """Assemble the run when every fold is done; otherwise report it incomplete. ``ensemble``
        (cross-cohort, every fold predicts the same participants): each participant's prediction
        is the mean over the folds (fold ``external``)."""
        from amage_core.evaluate.metrics import summarise

        distributed.barrier()          # under torchrun: rank 0 has written every fold it ran
        if not all(self.fold_done(f, config_hash) for f in fold_names):
            return RunResult(self.path, None, None, False, False)
        parts = [read_predictions(self.fold_dir(f) / "predictions.tsv") for f in fold_names]
        predictions = fold_mean(parts) if ensemble else pd.concat(parts, ignore_index=True)
        order = predictions.pop("_row") if "_row" in predictions else None
        if order is not None:
            predictions = predictions.iloc[order.argsort(kind="stable")].reset_index(drop=True)
        metrics = summarise(predictions)
        if distributed.context().is_main:
            write_tsv(self.path / "predictions.tsv", predictions)
            write_json(self.path / "metrics.json", metrics)
            write_json(self.path / "done.json", {"config_hash": config_hash})
        return RunResult(self.path, predictions, metrics, True, False)

    # -- folds -------------------------------------------------------------------------------
    def fold_dir(self, fold: str | int) -> Path:
        return self.path / f"fold-{fold}"

    def fold_done(self, fold: str | int, config_hash: str) -> bool:
        done = self.fold_dir(fold) / "done.json"
        return done.is_file() and read_json(done).get("config_hash") == config_hash

    def write_fold(self, fold: str | int, config_hash: str, predictions: pd.DataFrame,
                   split: pd.DataFrame, records: dict[str, dict]) -> None:
        """Write one finished fold: its test predictions (with ``_row``, the cohort row, for
        ordering), its split, JSON records (scaler, bias, fit summary), then its done marker."""
        if not distributed.context().is_main:
            return
        folder = self.fold_dir(fold)
        write_tsv(folder / "predictions.tsv", predictions)
        write_tsv(folder / "split.tsv", split)
        for name, record in records.items():
            write_json(folder / f"{name}.json", record)
        write_json(folder / "done.json", {"config_hash": config_hash})


def _path(run: RunResult | Path | str) -> Path:
    """The folder of a run given as a :class:`RunResult` or a path."""
    return Path(getattr(run, "path", run))


def _fold_dir(run: RunResult | Path | str, fold: str | int) -> Path:
    return _path(run) / f"fold-{fold}"


def run_config(run: RunResult | Path | str) -> dict:
    """What a run was run with (its ``config.json``)."""
    return read_json(_path(run) / "config.json")


def run_fold_names(run: RunResult | Path | str) -> list[str]:
    """The names of a run's fold folders, in the order of the folders' names (``fold-0``,
    ``fold-1``, ``fold-10``, ...)."""
    return [d.name.removeprefix("fold-") for d in sorted(_path(run).glob("fold-*"))]


def fold_split_table(run: RunResult | Path | str, fold: str | int) -> pd.DataFrame:
    """``participant_id, role`` (fit | val | test) of fold ``fold``, in the order the fold wrote them."""
    return pd.read_csv(_fold_dir(run, fold) / "split.tsv", sep="\t", dtype={"participant_id": str})


def fold_roles(run: RunResult | Path | str, fold: str | int) -> dict[str, frozenset[str]]:
    """``{"fit", "val", "test"}`` -> the participant_ids of fold ``fold`` in that role (``split.tsv``)."""
    table = fold_split_table(run, fold)
    return {role: frozenset(table.loc[table["role"] == role, "participant_id"]) for role in ("fit", "val", "test")}


def fold_rows(run: RunResult | Path | str, fold: str | int, cohort: PreparedCohort,
              role: str = "test") -> np.ndarray:
    """Rows of ``cohort`` of fold ``fold``'s participants in ``role``, in the fold's order (all of a
    participant's rows, when they have several sessions); a participant missing from ``cohort`` is a
    ``ValueError``."""
    table = fold_split_table(run, fold)
    ids = table.loc[table["role"] == role, "participant_id"]
    positions: dict[str, list[int]] = {}
    for i, pid in enumerate(cohort.participants["participant_id"].astype(str).to_numpy()):
        positions.setdefault(pid, []).append(i)
    missing = [p for p in ids if p not in positions]
    if missing:
        raise ValueError(f"{_fold_dir(run, fold)}: {role} participants {missing[:3]} are not in the "
                         f"cohort {cohort.root}")
    return np.array([i for p in ids for i in positions[p]], dtype=np.int64)


def fold_scaler(run: RunResult | Path | str, fold: str | int) -> AgeScaler | None:
    """The age scaler fold ``fold`` trained with (``scaler.json``); ``None`` for a baseline (none)."""
    from amage_core.train.scaler import AgeScaler

    path = _fold_dir(run, fold) / "scaler.json"
    return AgeScaler.from_dict(read_json(path)) if path.is_file() else None


def fold_bias(run: RunResult | Path | str, fold: str | int) -> BiasCorrection:
    """The bias correction fit in fold ``fold`` (``bias.json``)."""
    from amage_core.evaluate.bias import BiasCorrection

    return BiasCorrection.from_dict(read_json(_fold_dir(run, fold) / "bias.json"))


def fold_fit(run: RunResult | Path | str, fold: str | int) -> dict:
    """What fold ``fold``'s fit recorded (``fit.json``: participants fit, validated and tested on;
    a deep model's kept epoch, late-fusion weights and fusion epochs; a baseline's chosen settings)."""
    return read_json(_fold_dir(run, fold) / "fit.json")


def fold_val_predictions(run: RunResult | Path | str, fold: str | int) -> pd.DataFrame:
    """``participant_id, age, predicted_age`` of fold ``fold``'s inner validation participants
    (``val_predictions.tsv``); a ``ValueError`` when the fold kept no validation split."""
    path = _fold_dir(run, fold) / VAL_PREDICTIONS
    if not path.is_file():
        raise ValueError(f"{path} is missing: the run kept no validation split")
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str})


def fold_weights(run: RunResult | Path | str, fold: str | int) -> dict:
    """The kept weights of fold ``fold`` of a finished deep-model run (``best_model`` of its checkpoint)."""
    from amage_core.train.checkpoint import CHECKPOINT, load_checkpoint

    checkpoint = load_checkpoint(_fold_dir(run, fold) / CHECKPOINT)
    weights = checkpoint.get("best_model")
    if weights is None:
        raise ValueError(f"{_fold_dir(run, fold)}: the fit did not finish (no kept weights)")
    return weights


def fold_model(run: RunResult | Path | str, fold: str | int, cohort: PreparedCohort,
               build=None) -> nn.Module:
    """Fold ``fold``'s model of a deep run, in eval mode: built from the run's model configuration
    for ``cohort``'s inputs (``build(model_cfg, input_spec)``, default
    ``amage_core.models.build_model``) with the fold's kept weights."""
    from amage_core.config import ModelConfig, from_dict
    from amage_core.train.dataset import input_spec

    if build is None:
        from amage_core.models import build_model as build

    model = build(from_dict(ModelConfig, run_config(run)["model"]), input_spec(cohort))
    model.load_state_dict(fold_weights(run, fold))
    return model.eval()


def fold_predict(run: RunResult | Path | str, fold: str | int, cohort: PreparedCohort, rows: np.ndarray,
                 train_cfg: TrainConfig | None = None, training: PreparedCohort | None = None,
                 build=None) -> tuple[np.ndarray, np.ndarray | None]:
    """(predicted age in years (n,), gate (n, G) or None) of ``rows`` of ``cohort`` by fold ``fold``'s
    model, before bias correction (:func:`fold_bias` corrects them).

    A deep run's fold predicts with its kept weights and age scaler (``train_cfg``: batch size and
    device; default ``TrainConfig()``); a baseline keeps no fitted model, so it is refit on the fold's
    training participants of ``training`` (the cohort the run was trained on: the same estimator,
    seed and rows; :func:`amage_core.baselines.refit_fold`)."""
    from amage_core.config import GraphConfig, TrainConfig, from_dict
    from amage_core.train.dataset import CohortDataset
    from amage_core.train.loop import predict

    rows = np.asarray(rows, dtype=np.int64)
    config = run_config(run)
    if config.get("kind") == "baseline":
        from amage_core.baselines import refit_fold

        if training is None:
            raise ValueError(f"{_path(run)}: a baseline fold is refit on its training "
                             "participants: pass the training cohort")
        return refit_fold(run, fold, training, cohort, rows), None
    model = fold_model(run, fold, training if training is not None else cohort, build)
    scaler = fold_scaler(run, fold)
    dataset = CohortDataset(cohort, rows, from_dict(GraphConfig, config["graph"]), scaler,
                            frozenset(model.modalities))
    pred = predict(model, dataset, train_cfg or TrainConfig())
    if not np.array_equal(pred.rows, rows):
        raise RuntimeError(f"{_fold_dir(run, fold)}: predictions came back in another order than the rows asked for")
    return scaler.inverse(pred.scaled), pred.gate


def fold_histories(run_path: Path) -> dict[str, pd.DataFrame]:
    """Fold name -> the learning curve of a deep run's fold (``history.csv``: epoch, train_loss,
    val_loss, lr, seconds). A fusion run whose stage's epochs were chosen on the blend split gives
    that choice's curve (``fusion-epochs/history.csv``: every epoch, scored on the blend runs'
    held-out participants), since its own fit stops at the chosen epoch."""
    out = {}
    for path in sorted(Path(run_path).glob("fold-*/history.csv")):
        chosen = path.parent / FUSION_EPOCHS / "history.csv"
        out[path.parent.name.removeprefix("fold-")] = pd.read_csv(chosen if chosen.is_file() else path)
    return out


def fold_mean(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Predictions of the same participants by several folds, averaged per participant (and
    session) into fold ``external``: predicted ages and gate values are means, the rest is kept."""
    keys = [k for k in ("participant_id", "session") if k in parts[0]]
    if any(len(p) != len(parts[0]) or not p[keys].equals(parts[0][keys]) for p in parts):
        raise ValueError("fold ensemble: the folds predicted different participants")
    averaged = [c for c in parts[0] if c.startswith(("predicted_age", "gate_"))]
    table = parts[0].copy()
    table[averaged] = np.mean([p[averaged].to_numpy(dtype=float) for p in parts], axis=0)
    table["fold"] = EXTERNAL
    return table


def read_predictions(run: RunResult | Path | str | pd.DataFrame) -> pd.DataFrame:
    """A predictions table (participant_id, fold and session as text): of a run (its folder or
    result), a predictions file, or a table given as it is."""
    if isinstance(run, pd.DataFrame):
        return run
    path = _path(run)
    path = path / "predictions.tsv" if path.is_dir() else path
    return pd.read_csv(path, sep="\t", dtype={"participant_id": str, "fold": str, "session": str})


def prediction_table(participants: pd.DataFrame, rows, fold: str, predicted, corrected,
                     gate=None, with_session: bool = False) -> pd.DataFrame:
    """The predictions of cohort ``rows`` in the run-directory format (plus ``_row``)."""
    part = participants.iloc[list(rows)]
    table = {"participant_id": part["participant_id"].astype(str).to_numpy()}
    if with_session:
        table["session"] = part["session"].astype(str).to_numpy()
    table.update({"fold": fold, "age": part["age"].to_numpy(dtype=float),
                  "predicted_age": predicted, "predicted_age_corrected": corrected})
    if gate is not None:
        table.update({f"gate_{g}": gate[:, g] for g in range(gate.shape[1])})
    table["_row"] = list(rows)
    return pd.DataFrame(table)


def split_table(roles: list[tuple[str, pd.DataFrame, Any]]) -> pd.DataFrame:
    """``participant_id, role`` of one fold from (role, participants table, rows) triples."""
    frames = [pd.DataFrame({"participant_id": part.iloc[list(rows)]["participant_id"].astype(str),
                            "role": role}) for role, part, rows in roles]
    return pd.concat(frames, ignore_index=True).drop_duplicates()


def has_sessions(participants: pd.DataFrame) -> bool:
    """True when some participant has several rows (the tables then carry ``session``)."""
    return "session" in participants and bool(participants["participant_id"].duplicated().any())
