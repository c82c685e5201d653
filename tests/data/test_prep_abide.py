"""The ABIDE path on real data: nilearn's fetch_abide_pcp reading ../shared/data/abide offline."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import prep_fixtures as fx
from amage_core.data.prepare import prepare_cohort

pytestmark = pytest.mark.shared
SUB_IDS = [50642, 50646, 50647, 50649, 50653, 50003, 50004, 50005, 50006, 50007]


@pytest.fixture(scope="module")
def abide(shared_dir, tmp_path_factory):
    root = shared_dir / "data" / "abide"
    if not (root / "ABIDE_pcp").is_dir():
        pytest.skip(f"{root} has no ABIDE_pcp cache")
    out = tmp_path_factory.mktemp("abide") / "cohort"
    cfg = fx.cfg(min_volumes=100, empty_regions="drop-participant")
    cohort = prepare_cohort("abide", root, out, cfg, progress=False, sub_ids=SUB_IDS,
                            freesurfer=root / "freesurfer_features_males.tsv")
    return root, cohort


def test_abide_phenotypes_sites_and_regions(abide):
    root, c = abide
    pheno = pd.read_csv(root / "ABIDE_pcp" / "Phenotypic_V1_0b_preprocessed1.csv")
    pheno = pheno[pheno["SUB_ID"].isin(SUB_IDS)].set_index("SUB_ID")
    qc = c.qc.set_index("participant_id")
    assert len(qc) == len(pheno)                       # every fetched participant has a QC line
    for _, row in c.participants.iterrows():
        ref = pheno.loc[int(row["participant_id"].removeprefix("sub-"))]
        assert row["age"] == pytest.approx(ref["AGE_AT_SCAN"])
        assert row["sex"] == {1: "M", 2: "F"}[ref["SEX"]]
        assert row["site"] == ref["SITE_ID"] == row["SITE_ID"]
        assert int(row["DX_GROUP"]) == ref["DX_GROUP"]
        assert row["dx"] == {1: "autism", 2: "control"}[ref["DX_GROUP"]]
    assert c.regions["name"].tolist() == [f"#{i}" for i in range(1, 201)]
    assert c.regions[["x", "y", "z"]].isna().all().all()          # no CC200 coordinates offline
    assert c.manifest["atlas"]["name"] == "cc200"
    assert "empty regions" in qc.loc["sub-0050653", "reason"]    # regions outside the field of view


def test_abide_connectivity_and_freesurfer_table(abide):
    root, c = abide
    assert c.modalities == frozenset({"fmri", "table"}) and c.n >= 5
    assert c.connectivity.shape == (c.n, 200, 200)
    assert np.isfinite(c.connectivity).all()
    first = c.participants.iloc[0]
    ts = np.loadtxt(root / "ABIDE_pcp/cpac/filt_global" / f"{first['FILE_ID']}_rois_cc200.1D")
    r = np.corrcoef(ts[:, 0], ts[:, 1])[0, 1]
    assert c.connectivity[0, 0, 1] == pytest.approx(np.arctanh(r), abs=1e-4)
    fs = pd.read_csv(root / "freesurfer_features_males.tsv", sep="\t").set_index("FILE_ID")
    assert "AGE_AT_SCAN" not in c.table_columns and "DX_GROUP" not in c.table_columns
    assert len(c.table_columns) == 419
    np.testing.assert_allclose(c.tables[0], fs.loc[first["FILE_ID"], c.table_columns].to_numpy(float), rtol=1e-6)
    no_row = c.qc[c.qc["reason"].str.contains("structural table", na=False)]
    assert set(no_row["sex"]) <= {"F"}                           # the table holds males only


def test_abide_scan_fetches_once_per_state_of_the_cache(shared_dir, tmp_path, monkeypatch):
    import shutil

    import nilearn.datasets

    from amage_core.data.sources import abide as source

    real = shared_dir / "data" / "abide" / "ABIDE_pcp"
    if not real.is_dir():
        pytest.skip(f"{real} is absent")
    folder = tmp_path / "ABIDE_pcp" / "cpac" / "filt_global"
    folder.mkdir(parents=True)
    shutil.copy(real / "Phenotypic_V1_0b_preprocessed1.csv", tmp_path / "ABIDE_pcp")
    pheno = pd.read_csv(real / "Phenotypic_V1_0b_preprocessed1.csv").set_index("SUB_ID")
    for sub in SUB_IDS[:2]:
        name = f"{pheno.loc[sub, 'FILE_ID']}_rois_cc200.1D"
        shutil.copy(real / "cpac" / "filt_global" / name, folder / name)
    calls = []
    fetch = nilearn.datasets.fetch_abide_pcp
    monkeypatch.setattr(nilearn.datasets, "fetch_abide_pcp", lambda **kw: calls.append(kw) or fetch(**kw))
    source._phenotypic.cache_clear()

    first = source.scan(tmp_path, None, fx.cfg(), sub_ids=SUB_IDS[:2])
    again = source.scan(tmp_path, None, fx.cfg(), sub_ids=SUB_IDS[:2])
    assert len(calls) == 1
    assert [r.participant_id for r in first.records] == [r.participant_id for r in again.records]
    assert [r.timeseries for r in again.records] == [r.timeseries for r in first.records]
    again.records[0].age = -1.0                                 # a caller's change stays its own
    assert source.scan(tmp_path, None, fx.cfg(), sub_ids=SUB_IDS[:2]).records[0].age == first.records[0].age
    # a file added to (or replaced in) the cache folder: the fetcher runs again
    replaced = next(folder.iterdir())
    shutil.copy(replaced, folder / "new.tmp")
    (folder / "new.tmp").replace(replaced)
    source.scan(tmp_path, None, fx.cfg(), sub_ids=SUB_IDS[:2])
    assert len(calls) == 2
