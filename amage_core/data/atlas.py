"""Brain atlases: region names, functional-network labels and MNI coordinates.

Atlases shipped inside nilearn load offline (``dosenbach160``, ``seitzman300``, ``power264``).
Others are fetched by nilearn on first use (internet needed) and cached in nilearn's data folder.

Every atlas is returned as an :class:`Atlas`: ``regions`` is a table with one row per region, in the
order the time-series columns and connectivity rows use (columns ``index``, ``name``, ``network``,
``x``, ``y``, ``z``; ``network`` is ``"none"`` when the atlas has no network labels).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NO_NETWORK = "none"


@dataclass
class Atlas:
    name: str
    regions: pd.DataFrame          # index, name, network, x, y, z  (R rows)
    kind: str = "coords"           # "coords" (spheres) or "labels" (a label image)
    radius_mm: float = 5.0         # sphere radius for coordinate atlases
    maps: str | None = None        # label image path for "labels" atlases

    @property
    def n_regions(self) -> int:
        return len(self.regions)

    @property
    def coords(self) -> np.ndarray:
        """(R, 3) MNI coordinates in mm."""
        return self.regions[["x", "y", "z"]].to_numpy(dtype=float)

    @property
    def networks(self) -> list[str]:
        """Network names in order of first appearance (``[]`` when unlabelled)."""
        nets = [n for n in dict.fromkeys(self.regions["network"]) if n != NO_NETWORK]
        return nets

    @property
    def has_networks(self) -> bool:
        return bool(self.networks)

    def network_index(self) -> np.ndarray:
        """(R,) integer network id per region; -1 where unlabelled."""
        lookup = {n: i for i, n in enumerate(self.networks)}
        return np.array([lookup.get(n, -1) for n in self.regions["network"]], dtype=np.int64)


def _table(names, networks, xyz) -> pd.DataFrame:
    xyz = np.asarray(xyz, dtype=float)
    return pd.DataFrame({
        "index": np.arange(len(names)),
        "name": [str(n) for n in names],
        "network": [str(n) for n in networks],
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
    })


def _dosenbach160() -> Atlas:
    from nilearn.datasets import fetch_coords_dosenbach_2010

    d = fetch_coords_dosenbach_2010(legacy_format=False) if _accepts_legacy() else fetch_coords_dosenbach_2010()
    rois = d.rois[["x", "y", "z"]].to_numpy()
    return Atlas("dosenbach160", _table(list(d.labels), list(d.networks), rois), radius_mm=5.0)


def _seitzman300() -> Atlas:
    from nilearn.datasets import fetch_coords_seitzman_2018

    d = fetch_coords_seitzman_2018()
    rois = d.rois[["x", "y", "z"]].to_numpy()
    nets = ["unassigned" if n == "unassigned" else str(n) for n in d.networks]
    names = [f"{n}_{i}" for i, n in enumerate(nets)]
    return Atlas("seitzman300", _table(names, nets, rois), radius_mm=4.0)


def _power264() -> Atlas:
    from nilearn.datasets import fetch_coords_power_2011

    d = fetch_coords_power_2011()
    rois = d.rois[["x", "y", "z"]].to_numpy()
    names = [f"roi{int(r)}" for r in d.rois["roi"]]
    return Atlas("power264", _table(names, [NO_NETWORK] * len(names), rois), radius_mm=5.0)


def _accepts_legacy() -> bool:
    import inspect

    from nilearn.datasets import fetch_coords_dosenbach_2010

    return "legacy_format" in inspect.signature(fetch_coords_dosenbach_2010).parameters


ATLASES = {
    "dosenbach160": _dosenbach160,
    "seitzman300": _seitzman300,
    "power264": _power264,
}


def load_atlas(name: str) -> Atlas:
    """Load an atlas by name (see ``ATLASES``) or from a regions TSV path (index,name,network,x,y,z)."""
    key = name.lower()
    if key in ATLASES:
        return ATLASES[key]()
    path = Path(name)
    if path.suffix in {".tsv", ".csv"} and path.is_file():
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        missing = {"name", "x", "y", "z"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: atlas table lacks column(s) {sorted(missing)}")
        nets = df["network"] if "network" in df else [NO_NETWORK] * len(df)
        return Atlas(path.stem, _table(df["name"], nets, df[["x", "y", "z"]].to_numpy()))
    raise ValueError(f"unknown atlas {name!r}: use one of {sorted(ATLASES)} or a regions TSV path")
