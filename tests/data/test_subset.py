import numpy as np
import pandas as pd
import pytest

from amage_core.data.cohort import RowView, subset, write_cohort


@pytest.fixture()
def cohort(tmp_path):
    n = 6
    participants = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(n)], "age": np.arange(n) + 20.0,
                                 "sex": ["F", "M"] * 3})
    fc = np.arange(n * 4 * 4, dtype=np.float32).reshape(n, 4, 4)
    t1 = np.arange(n * 8, dtype=np.float32).reshape(n, 2, 2, 2)
    return write_cohort(tmp_path / "c", participants, connectivity=fc, t1=t1, config={"a": 1})


def test_row_view_reads_only_the_chosen_rows():
    base = np.arange(20).reshape(5, 4)
    view = RowView(base, np.array([3, 1]))
    assert view.shape == (2, 4) and len(view) == 2 and view.ndim == 2
    assert np.array_equal(view[0], base[3]) and np.array_equal(view[1, 2], base[1, 2])
    assert np.array_equal(np.asarray(view), base[[3, 1]])
    assert [r.tolist() for r in view] == [base[3].tolist(), base[1].tolist()]
    assert np.asarray(view, dtype=np.float64).dtype == np.float64


def test_subset_keeps_rows_aligned_and_changes_the_identity(cohort):
    males = subset(cohort, np.flatnonzero(cohort.participants.sex == "M"), "sex=M")
    assert males.n == 3 and list(males.participants.sex) == ["M"] * 3
    for i, pid in enumerate(males.participants.participant_id):
        row = int(pid.split("-")[1])
        assert np.array_equal(males.connectivity[i], cohort.connectivity[row])
        assert np.array_equal(males.t1[i], cohort.t1[row])
    assert males.modalities == cohort.modalities
    assert males.manifest["config_hash"] != cohort.manifest["config_hash"]
    assert males.manifest["n_participants"] == 3


def test_empty_subset_is_an_error(cohort):
    with pytest.raises(ValueError, match="no participant"):
        subset(cohort, np.array([], dtype=int), "sex=X")
