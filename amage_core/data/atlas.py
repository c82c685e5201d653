"""Brain atlases: region names, functional-network labels and MNI coordinates.

Atlases shipped inside nilearn load offline (``dosenbach160``, ``seitzman300``, ``power264``).
Others are fetched by nilearn on first use (internet needed) and cached in nilearn's data folder
(``data_dir``, default ``~/nilearn_data``):

- ``aal116`` / ``aal90``: AAL for SPM12 (``fetch_atlas_aal(version="SPM12")``); AAL-90 drops the 26
  cerebellum and vermis labels, as the AMAge-Net authors did. Label atlas, no network labels.
- ``schaefer<N>`` / ``schaefer<N>-<7|17>``: Schaefer 2018 (``fetch_atlas_schaefer_2018``), N in
  100..1000, with the Yeo 7 (default) or 17 network labels taken from the region names.
- ``cc200``: the 200 Craddock regions of the ABIDE PCP time series, named as their columns
  (``#1`` .. ``#200``). No network labels, and no coordinates offline (``x, y, z`` are NaN): give a
  regions TSV with coordinates as ``--atlas PATH`` where they are needed.

Label atlases also carry the label image (``maps``) and the image value of each region
(``label_values``), used by ``NiftiLabelsMasker`` when time series come from voxelwise BOLD; their
coordinates are the regions' centres (``nilearn.plotting.find_parcellation_cut_coords``).

Every atlas is returned as an :class:`Atlas`: ``regions`` is a table with one row per region, in the
order the time-series columns and connectivity rows use (columns ``index``, ``name``, ``network``,
``x``, ``y``, ``z``; ``network`` is ``"none"`` when the atlas has no network labels).
"""
from __future__ import annotations

import re
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
    label_values: tuple[int, ...] | None = None   # (R,) image value of each region ("labels")

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


def _label_centres(maps: str, values: list[int]) -> np.ndarray:
    """(R, 3) MNI centre of each label value (NaN where a value is absent from the image)."""
    from nilearn.plotting import find_parcellation_cut_coords

    coords, found = find_parcellation_cut_coords(maps, return_label_names=True)
    lookup = {int(v): c for v, c in zip(found, coords)}
    return np.array([lookup.get(int(v), (np.nan,) * 3) for v in values], dtype=float)


def _aal(cerebellum: bool, data_dir: str | None) -> Atlas:
    from nilearn.datasets import fetch_atlas_aal

    d = fetch_atlas_aal(version="SPM12", data_dir=data_dir, verbose=0)
    pairs = [(str(n), int(i)) for n, i in zip(d.labels, d.indices) if str(n) != "Background"]
    if not cerebellum:
        pairs = [(n, i) for n, i in pairs if not n.startswith(("Cerebelum", "Vermis"))]
    names = [n for n, _ in pairs]
    values = [i for _, i in pairs]
    table = _table(names, [NO_NETWORK] * len(names), _label_centres(d.maps, values))
    return Atlas("aal116" if cerebellum else "aal90", table, kind="labels", maps=str(d.maps),
                 label_values=tuple(values))


def _schaefer(n_rois: int, networks: int, data_dir: str | None) -> Atlas:
    from nilearn.datasets import fetch_atlas_schaefer_2018

    d = fetch_atlas_schaefer_2018(n_rois=n_rois, yeo_networks=networks, resolution_mm=2,
                                  data_dir=data_dir, verbose=0)
    lut = d.lut[d.lut["name"] != "Background"]
    names = [str(n) for n in lut["name"]]
    # "7Networks_LH_Vis_1" -> network "Vis"
    nets = [n.split("_")[2] if n.count("_") >= 3 else NO_NETWORK for n in names]
    values = [int(v) for v in lut["index"]]
    table = _table(names, nets, _label_centres(d.maps, values))
    return Atlas(f"schaefer{n_rois}-{networks}", table, kind="labels", maps=str(d.maps),
                 label_values=tuple(values))


def _cc200() -> Atlas:
    names = [f"#{i}" for i in range(1, 201)]
    return Atlas("cc200", _table(names, [NO_NETWORK] * 200, np.full((200, 3), np.nan)))


ATLASES = {
    "dosenbach160": _dosenbach160,
    "seitzman300": _seitzman300,
    "power264": _power264,
    "cc200": _cc200,
}
FETCHED = ("aal90", "aal116", "schaefer<N>", "schaefer<N>-7", "schaefer<N>-17")
_SCHAEFER = re.compile(r"^schaefer(\d+)(?:-(7|17))?$")


def load_atlas(name: str, data_dir: str | Path | None = None) -> Atlas:
    """Load an atlas by name or from a regions TSV path (index,name,network,x,y,z).

    Names: ``dosenbach160``, ``seitzman300``, ``power264``, ``cc200`` (offline); ``aal90``,
    ``aal116``, ``schaefer<N>[-7|-17]`` (fetched by nilearn into ``data_dir`` on first use).
    """
    key = name.lower()
    if key in ATLASES:
        return ATLASES[key]()
    data_dir = str(data_dir) if data_dir is not None else None
    if key in ("aal90", "aal116"):
        return _aal(cerebellum=key == "aal116", data_dir=data_dir)
    if m := _SCHAEFER.match(key):
        n_rois, nets = int(m.group(1)), int(m.group(2) or 7)
        if n_rois not in range(100, 1001, 100):
            raise ValueError(f"atlas {name!r}: Schaefer 2018 has 100, 200, ..., 1000 regions")
        return _schaefer(n_rois, nets, data_dir)
    path = Path(name)
    if path.suffix in {".tsv", ".csv"} and path.is_file():
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
        missing = {"name", "x", "y", "z"} - set(df.columns)
        if missing:
            raise ValueError(f"{path}: atlas table lacks column(s) {sorted(missing)}")
        nets = df["network"] if "network" in df else [NO_NETWORK] * len(df)
        return Atlas(path.stem, _table(df["name"], nets, df[["x", "y", "z"]].to_numpy()))
    raise ValueError(
        f"unknown atlas {name!r}: use one of {sorted(ATLASES) + list(FETCHED)} or a regions TSV path"
    )
