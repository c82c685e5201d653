"""Interpretability: attributions of trained runs, region/network summaries, checks against truth."""
