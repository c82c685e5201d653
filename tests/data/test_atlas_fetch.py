"""AAL and Schaefer through nilearn's fetchers, reading files laid out as nilearn caches them."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import prep_fixtures as fx
from amage_core.data.atlas import load_atlas

# the fixture images hold only some labels: nilearn warns about the others
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
AAL_NAMES = [("Precentral_L", 2001), ("Precentral_R", 2002), ("Frontal_Sup_L", 2101),
             ("Cerebelum_Crus1_L", 9001), ("Vermis_1_2", 9100), ("Thalamus_R", 7102)]


def _label_image(path, values):
    data = np.zeros(fx.GRID, dtype=np.int16)
    for k, v in enumerate(values):
        data[2 + 3 * k: 4 + 3 * k, 5:9, 5:9] = v
    nib.save(nib.Nifti1Image(data, fx.AFFINE), path)


def test_aal90_drops_cerebellum_and_vermis(tmp_path):
    folder = tmp_path / "aal_SPM12" / "aal" / "atlas"
    folder.mkdir(parents=True)
    _label_image(folder / "AAL.nii", [v for _, v in AAL_NAMES])
    labels = "".join(f"<label><index>{v}</index><name>{n}</name></label>" for n, v in AAL_NAMES)
    (folder / "AAL.xml").write_text(f"<?xml version='1.0'?><atlas><data>{labels}</data></atlas>")
    a90 = load_atlas("aal90", data_dir=tmp_path)
    assert a90.name == "aal90" and a90.n_regions == 4
    assert a90.regions["name"].tolist() == ["Precentral_L", "Precentral_R", "Frontal_Sup_L", "Thalamus_R"]
    assert a90.label_values == (2001, 2002, 2101, 7102) and a90.kind == "labels"
    assert np.isfinite(a90.coords).all() and not a90.has_networks
    # centres follow the label blocks along x
    assert np.all(np.diff(a90.coords[:3, 0]) > 0)
    a116 = load_atlas("aal116", data_dir=tmp_path)
    assert a116.n_regions == 6 and "Vermis_1_2" in set(a116.regions["name"])


@pytest.mark.parametrize("networks", [7, 17])
def test_schaefer_network_labels(tmp_path, networks):
    folder = tmp_path / "schaefer_2018"
    folder.mkdir()
    names = (["7Networks_LH_Vis_1", "7Networks_LH_Default_PFC_1", "7Networks_RH_Vis_1"] if networks == 7 else
             ["17Networks_LH_VisCent_1", "17Networks_LH_DefaultA_PFCm_1", "17Networks_RH_VisCent_1"])
    names += [f"{networks}Networks_RH_Cont_{i}" for i in range(97)]
    (folder / f"Schaefer2018_100Parcels_{networks}Networks_order.txt").write_text(
        "".join(f"{i + 1}\t{n}\t1\t2\t3\t0\n" for i, n in enumerate(names)))
    _label_image(folder / f"Schaefer2018_100Parcels_{networks}Networks_order_FSLMNI152_2mm.nii.gz", [1, 2, 3])
    a = load_atlas(f"schaefer100-{networks}" if networks == 17 else "schaefer100", data_dir=tmp_path)
    assert a.name == f"schaefer100-{networks}" and a.n_regions == 100
    expected = ["Vis", "Default", "Vis"] if networks == 7 else ["VisCent", "DefaultA", "VisCent"]
    assert a.regions["network"].tolist()[:3] == expected
    assert a.label_values[:3] == (1, 2, 3) and np.isnan(a.coords[5]).all()   # absent labels: NaN centre
    with pytest.raises(ValueError, match="100, 200"):
        load_atlas("schaefer150", data_dir=tmp_path)


def test_unknown_atlas_lists_the_choices():
    with pytest.raises(ValueError, match="aal90"):
        load_atlas("nope")
