"""Data station: sources on disk -> one prepared, quality-checked cohort."""
