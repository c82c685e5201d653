"""Load: a 2,000-participant cohort (BIDS + XCP-D ``seg-<Atlas>_stat-mean_timeseries.tsv``, no T1)
is prepared whole, right, and with a peak memory that does not grow with the number of participants.

Two cohorts from the same builder (:func:`prep_fixtures.build_xcpd_cohort`: the first 250
participants of the large one are the same files as the small one) are each prepared in a fresh
process by the benchmark's own measurement (:func:`amage_core.bench.measure.measured`, task
``prep``: psutil sums the resident memory of the process tree every 50 ms, the worker adds its own
``getrusage`` peak, the larger is kept), with ``n_jobs=2``: the two joblib workers are part of
the measured tree.

The bound. Streaming keeps one participant's arrays in memory at a time, so between 250 and 2,000
participants only per-participant metadata may grow (records, QC and participants tables: a few kB
each). Holding the connectivity (or the pages of a memory map of it) would add the array itself,
``(2000 - 250) x 160 x 160`` float32 = 171 MiB. The growth must stay below a third of that (57 MiB):
room for the metadata and measurement noise, and a failure for any preparation that keeps even a
third of the array resident. Shown by hand: with the assembly this test was written against
(rows written into an ``open_memmap`` of the output) the growth was 189 MiB; with the rows collected
in a list and stacked, 321 MiB; streamed, 4.6-5.7 MiB.

The two cohorts and their preparations take about 0.6 GB of temporary disk.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import prep_fixtures as pf
from amage_core.bench.measure import MB, Measured, measured
from amage_core.config import to_dict
from amage_core.data.cohort import load_cohort

N_LARGE, N_SMALL = 2000, 250
N_REGIONS = 160                          # dosenbach160
N_VOLUMES = 30                           # the test configuration's min_volumes: the smallest accepted
ARRAY_GROWTH_MB = (N_LARGE - N_SMALL) * N_REGIONS * N_REGIONS * np.dtype(np.float32).itemsize / MB
BOUND_MB = ARRAY_GROWTH_MB / 3
SPOT = (0, 1, 249, 250, 1000, 1998, 1999)     # participants whose connectivity is recomputed here


def prepare_measured(root: Path, out: Path, n_jobs: int) -> Measured:
    """``amage prep`` of ``root`` in a fresh process, measured (wall time, peak resident memory)."""
    cfg = pf.cfg(min_volumes=N_VOLUMES, n_jobs=n_jobs)          # modalities: what the source offers
    return measured("prep", {"root": str(root), "out": str(out), "prep": to_dict(cfg)}, timeout=600)


def direct_connectivity(tsv: Path) -> np.ndarray:
    """Fisher z of the Pearson correlation, diagonal 0, computed without the library."""
    ts = np.loadtxt(tsv, delimiter="\t", skiprows=1)
    assert ts.shape == (N_VOLUMES, N_REGIONS)
    z = np.arctanh(np.clip(np.corrcoef(ts.T), -1 + 1e-6, 1 - 1e-6))
    np.fill_diagonal(z, 0.0)
    return z


@pytest.mark.slow
def test_preparing_2000_participants_streams(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")      # small matrices, one process per core
    small = pf.build_xcpd_cohort(tmp_path / "small", N_SMALL, N_VOLUMES)
    large = pf.build_xcpd_cohort(tmp_path / "large", N_LARGE, N_VOLUMES)
    m_small = prepare_measured(small, tmp_path / "prepared-small", n_jobs=2)
    m_large = prepare_measured(large, tmp_path / "prepared-large", n_jobs=2)
    growth = m_large.peak_mb - m_small.peak_mb
    figures = (f"prep {N_SMALL}: {m_small.result['seconds']:.1f} s, peak {m_small.peak_mb:.0f} MiB; "
               f"prep {N_LARGE}: {m_large.result['seconds']:.1f} s, peak {m_large.peak_mb:.0f} MiB; "
               f"growth {growth:.1f} MiB (bound {BOUND_MB:.0f} MiB = a third of the "
               f"{ARRAY_GROWTH_MB:.0f} MiB array growth)")
    print(figures)

    # everyone is included, in participants.tsv order, fMRI only (the source has no T1)
    c = load_cohort(tmp_path / "prepared-large", verify=True)
    listed = pd.read_csv(large / "participants.tsv", sep="\t", dtype={"participant_id": str})
    assert m_large.result["n_seen"] == N_LARGE and m_large.result["n_included"] == N_LARGE
    assert (c.qc["status"] == "included").all() and len(c.qc) == N_LARGE
    assert c.participants["participant_id"].tolist() == listed["participant_id"].tolist()
    assert np.array_equal(c.ages, listed["age"].to_numpy(dtype=np.float32))
    assert c.modalities == frozenset({"fmri"}) and c.t1 is None
    assert c.connectivity.shape == (N_LARGE, N_REGIONS, N_REGIONS) and c.connectivity.dtype == np.float32
    # the arrays are right: spot checks against a direct computation, in the right rows
    xcpd = large / "derivatives" / "xcp_d"
    for i in SPOT:
        sub = listed["participant_id"][i]
        tsv, = (xcpd / sub / "func").glob(f"{sub}_task-rest_*_seg-dosenbach160_stat-mean_timeseries.tsv")
        np.testing.assert_allclose(c.connectivity[i], direct_connectivity(tsv), rtol=1e-5, atol=1e-5,
                                   err_msg=f"{sub} (row {i})")
    assert np.abs(c.connectivity[0] - c.connectivity[1]).max() > 0.5      # participants differ
    # the same files give the same rows, whatever the cohort's size
    s = load_cohort(tmp_path / "prepared-small")
    assert m_small.result["n_included"] == N_SMALL
    assert np.array_equal(s.connectivity, c.connectivity[:N_SMALL])

    # peak memory does not grow with the number of participants
    assert growth < BOUND_MB, f"preparation's peak memory grew with the cohort: {figures}"
