"""Evaluation: brain-age metrics, bias correction of the brain-age gap, paired comparisons."""
