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

XCP-D's own atlases (``4S156Parcels``, ``Gordon``, ``Glasser``, ``Tian``, ...) are read from the
derivatives they came with (``load_atlas(name, xcpd_dirs=...)``, see
:func:`amage_core.data.sources.derivatives.xcpd_atlases`): region names from the ``label`` column of
their ``_dseg.tsv`` (the names XCP-D gives the time-series columns), networks from ``network_label``
when present (else from Schaefer-style names, else none), coordinates the centres of the labels in
the ``_dseg.nii.gz`` image (NaN for a CIFTI-only atlas).

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
    files: tuple[str, ...] = ()    # files the atlas was read from (their content enters a cohort's identity)

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


_NETWORK_MISSING = {"", "none", "n/a", "na", "nan", "unassigned"}
_SCHAEFER_NAME = re.compile(r"^\d+Networks_[LR]H_([A-Za-z]+)")


def from_dseg(name: str, table: str | Path, image: str | Path | None = None) -> Atlas:
    """An atlas from a BIDS ``_dseg.tsv`` (``index``, ``label``[, ``network_label``]) and its label image."""
    table = Path(table)
    try:
        df = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False, index_col=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{table}: cannot read the atlas table ({exc})") from exc
    label_col = "label" if "label" in df else "name" if "name" in df else None
    if label_col is None or "index" not in df:
        raise ValueError(f"{table}: atlas table lacks column(s) "
                         f"{[c for c in ('index', 'label') if c not in df and not (c == 'label' and 'name' in df)]}"
                         f"; found {list(df.columns)[:8]}")
    values = pd.to_numeric(df["index"], errors="coerce")
    if values.isna().any() or not (values == values.round()).all():
        raise ValueError(f"{table}: index column holds non-integer value(s) "
                         f"{df['index'][values.isna() | (values != values.round())].tolist()[:3]}")
    names = [str(n).strip() for n in df[label_col]]
    _check_names(names, table)
    net_col = next((c for c in ("network_label", "network") if c in df), None)
    if net_col is not None:
        nets = [NO_NETWORK if str(n).strip().lower() in _NETWORK_MISSING else str(n).strip() for n in df[net_col]]
    else:
        nets = [(m.group(1) if (m := _SCHAEFER_NAME.match(n)) else NO_NETWORK) for n in names]
    label_values = tuple(int(v) for v in values)
    xyz = (_label_centres(str(image), list(label_values)) if image is not None
           else np.full((len(names), 3), np.nan))
    files = tuple(str(p) for p in (table, image) if p is not None)
    return Atlas(name, _table(names, nets, xyz), kind="labels" if image is not None else "coords",
                 maps=str(image) if image is not None else None,
                 label_values=label_values if image is not None else None, files=files)


def _check_names(names: list[str], path: Path) -> None:
    blank = [i for i, n in enumerate(names) if not n or n.lower() == "nan"]
    if blank:
        raise ValueError(f"{path}: region name missing in row(s) {blank[:5]}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{path}: region name(s) {dup[:5]} appear more than once (time-series columns "
                         "are matched to regions by name)")


def _regions_tsv(path: Path) -> Atlas:
    """A user's regions table: name, x, y, z[, network]."""
    try:
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index_col=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: cannot read the atlas table ({exc})") from exc
    missing = {"name", "x", "y", "z"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: atlas table lacks column(s) {sorted(missing)}")
    if df.empty:
        raise ValueError(f"{path}: atlas table has no regions")
    names = [str(n).strip() for n in df["name"]]
    _check_names(names, path)
    xyz = df[["x", "y", "z"]].apply(pd.to_numeric, errors="coerce")
    bad = xyz.isna().any(axis=1) | ~np.isfinite(xyz.to_numpy(dtype=float)).all(axis=1)
    # no coordinates at all is allowed (an atlas used with XCP-D time series only); some missing is a mistake
    if bad.any() and not bad.all():
        rows = [f"{names[i]} ({', '.join(str(df.at[i, c]) for c in 'xyz')})" for i in np.flatnonzero(bad)[:3]]
        raise ValueError(f"{path}: {int(bad.sum())} region(s) without finite x, y, z coordinates: "
                         f"{'; '.join(rows)}; give all three for every region, or leave the three columns "
                         "empty for an atlas without coordinates")
    nets = df["network"].fillna(NO_NETWORK) if "network" in df else [NO_NETWORK] * len(df)
    return Atlas(path.stem, _table(names, nets, xyz.to_numpy(dtype=float)), files=(str(path),))


def load_atlas(name: str, data_dir: str | Path | None = None, xcpd_dirs=None) -> Atlas:
    """Load an atlas by name or from a regions TSV path (index,name,network,x,y,z).

    Names: ``dosenbach160``, ``seitzman300``, ``power264``, ``cc200`` (offline); an atlas shipped in
    XCP-D derivatives (``xcpd_dirs``: a :class:`~amage_core.data.sources.derivatives.DerivativeDirs`),
    e.g. ``4S156Parcels``; ``aal90``, ``aal116``, ``schaefer<N>[-7|-17]`` (fetched by nilearn into
    ``data_dir`` on first use).
    """
    key = name.lower()
    path = Path(name)
    if path.suffix in {".tsv", ".csv"} and path.is_file():
        return _regions_tsv(path)
    if xcpd_dirs is not None:
        from amage_core.data.sources.derivatives import find_xcpd_atlas

        shipped = find_xcpd_atlas(xcpd_dirs, name)
        if shipped is not None:
            return from_dseg(shipped.name, shipped.table, shipped.image)
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
    shipped = ""
    if xcpd_dirs is not None:
        from amage_core.data.sources.derivatives import xcpd_atlases

        names = sorted(a.name for a in xcpd_atlases(xcpd_dirs).values())
        shipped = f", an atlas of the XCP-D derivatives {names}" if names else ""
    raise ValueError(
        f"unknown atlas {name!r}: use one of {sorted(ATLASES) + list(FETCHED)}{shipped} or a regions TSV path"
    )
