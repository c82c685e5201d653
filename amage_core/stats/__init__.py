"""Statistics on run products: sex differences in brain age (statsmodels)."""
