"""Data station: sources on disk -> one prepared, quality-checked cohort.

Public entry points:

- :func:`amage_core.data.prepare.prepare_cohort` (``amage prep``): camcan | oasis3 | bids | abide
  -> a prepared cohort folder (book/architecture.md section 2); resumable, parallel, QC'd.
- :func:`amage_core.data.cohort.load_cohort` / :func:`~amage_core.data.cohort.write_cohort` and
  :class:`~amage_core.data.cohort.PreparedCohort`: read (memory-mapped) and write that folder.
- :func:`amage_core.data.atlas.load_atlas`: regions, networks and coordinates of an atlas.

Modules: ``sources/`` (file names and demographics -> participant records), ``fmri`` (time series
-> Fisher-z connectivity, motion QC), ``smri`` (T1 -> shared MNI grid), ``tables`` (regional
measures), ``qc`` (reasons and summary), ``graph`` (connectivity -> graph, for the models).
"""
