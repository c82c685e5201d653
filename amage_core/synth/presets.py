"""Scanner and cohort presets: who is scanned, on what, for how long.

A preset fixes what differs between real cohorts and is not a property of ageing itself: the age
distribution, the resting-state acquisition (TR, number of volumes) and the scanner's T1 contrast,
noise and bias field. ``camcan-like`` follows Cam-CAN stage 2 (Shafto et al. 2014; Taylor et al.
2017: ages 18-88, roughly uniform over decades; 3T Siemens TIM Trio MPRAGE; resting EPI TR 1.97 s,
261 volumes). ``oasis3-like`` follows OASIS-3 (LaMontagne et al. 2019: cognitively normal adults
42-95, most 60-80; 3T Siemens TIM Trio / Biograph mMR; resting EPI TR 2.2 s, 164 volumes) with a
different contrast, more noise and a stronger bias field, so cross-cohort transfer has a real
domain shift to overcome.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Preset:
    """Acquisition and sampling settings of one synthetic cohort."""

    name: str
    age_min: float
    age_max: float
    age_distribution: Literal["uniform", "normal"]
    age_mean: float                  # used by "normal" (truncated to [age_min, age_max])
    age_sd: float
    tr: float                        # s
    n_volumes: int
    t1_gm: float                     # T1w intensity of pure grey matter (arbitrary units)
    t1_wm: float                     # pure white matter
    t1_csf: float                    # pure CSF
    t1_noise: float                  # Rician noise sd as a fraction of the WM intensity
    t1_bias: float                   # sd of the log bias field (smooth, multiplicative)
    t1_gain_sd: float                # per-session global intensity scale (log sd)
    bold_s0: float                   # mean EPI baseline intensity in grey matter
    bold_noise: float                # thermal noise sd as a fraction of the baseline
    fd_at_20: float                  # median mean framewise displacement (mm) at age 20
    fd_per_decade: float             # multiplicative rise of mean FD per decade of age


PRESETS: dict[str, Preset] = {
    "camcan-like": Preset(
        name="camcan-like", age_min=18.0, age_max=89.0, age_distribution="uniform",
        age_mean=53.0, age_sd=20.0, tr=1.97, n_volumes=261,
        t1_gm=620.0, t1_wm=900.0, t1_csf=250.0, t1_noise=0.03, t1_bias=0.06, t1_gain_sd=0.05,
        bold_s0=800.0, bold_noise=0.012, fd_at_20=0.11, fd_per_decade=1.12,
    ),
    "oasis3-like": Preset(
        name="oasis3-like", age_min=42.0, age_max=95.0, age_distribution="normal",
        age_mean=70.0, age_sd=9.0, tr=2.2, n_volumes=164,
        t1_gm=540.0, t1_wm=820.0, t1_csf=300.0, t1_noise=0.05, t1_bias=0.12, t1_gain_sd=0.08,
        bold_s0=650.0, bold_noise=0.018, fd_at_20=0.13, fd_per_decade=1.12,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ValueError lists the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown synth preset {name!r}; known: {sorted(PRESETS)}") from None
