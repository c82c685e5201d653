"""Network-organised resting-state time series that age, with head motion as a confound.

Generative model for one participant (regions r of the atlas, functional networks k, volumes t)::

    g(t), u_k(t), e_r(t)   independent white noise convolved with the SPM canonical HRF at the TR
                           (so the signals live at the slow BOLD frequencies), unit variance
    z_k(t) = sqrt(rho_k) g(t) + sqrt(1 - rho_k) u_k(t)           network signals
    x_r(t) = lambda_r z_k(r)(t) + sqrt(1 - lambda_r^2) e_r(t)     regional signals

so the expected correlation of two regions is ``lambda_r lambda_s`` within a network and
``lambda_r lambda_s rho`` between networks. Ageing acts through the functional age ``a``:

* **Within-network connectivity and segregation decline** with age, most in the default-mode and
  sensorimotor networks, less in control networks, little in visual/cerebellar ones:
  ``lambda_k(a) = lambda_k(50) - beta_k (a - 50)/10`` (Andrews-Hanna et al. 2007, Neuron 56:924;
  Ferreira & Busatto 2013, Neurosci Biobehav Rev 37:384; Betzel et al. 2014, NeuroImage 102:345;
  Chan et al. 2014, PNAS 111:E4997; Geerligs et al. 2015, Cereb Cortex 25:1987 on Cam-CAN).
* **Between-network coupling rises** (dedifferentiation; Chan et al. 2014; Geerligs et al. 2015):
  ``rho(a) = rho(50) + gamma (a - 50)/10``.
* **Sex**: females have stronger within-default-mode and males stronger within-sensorimotor
  connectivity (Zhang et al. 2016, Hum Brain Mapp 37:2771; Allen et al. 2011); the default-mode
  decline is steeper in males, a sex-specific trajectory (Scheinost et al. 2015, Cereb Cortex
  25:4041, found sex differences in age trajectories of network connectivity).
* **Individual variation unrelated to age**: each participant's loadings and couplings scatter
  around the expected ones (individual functional "fingerprints", Finn et al. 2015), and 261
  volumes give noisy correlation estimates, as in real data.
* **Head motion** rises with chronological age (Savalia et al. 2017, Hum Brain Mapp 38:472; Geerligs
  et al. 2017). Six rigid-body parameters follow a leaky random walk with heavy-tailed jumps,
  scaled to the participant's mean framewise displacement (Power et al. 2012). Denoising never
  removes motion completely: a residual, spike-locked artefact shared by all regions stays in the
  XCP-D-style output and inflates correlations in high-motion (older) participants (Power et al.
  2012, NeuroImage 59:2142; Satterthwaite et al. 2012), a confound models must see through.

Arrays: time series are (T, R) (volumes x regions), motion (T, 6) [trans_x/y/z in mm,
rot_x/y/z in rad].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import signal

from amage_core.data.atlas import Atlas
from amage_core.synth.presets import Preset


@dataclass(frozen=True)
class NetworkAging:
    """Ageing of one kind of functional network (matched to atlas labels by keyword)."""

    key: str
    match: tuple[str, ...]          # lower-case substrings of atlas network names
    loading_50: float               # region-network loading at age 50 (between the sexes)
    decline: float                  # loading lost per decade (females)
    female_offset: float            # female minus male loading
    male_decline_ratio: float = 1.0  # males' decline / females' decline


NETWORK_AGING: tuple[NetworkAging, ...] = (
    NetworkAging("default", ("default",), 0.64, 0.020, 0.06, male_decline_ratio=1.3),
    NetworkAging("sensorimotor", ("sensorimotor", "somatomotor"), 0.66, 0.015, -0.05),
    NetworkAging("cingulo-opercular", ("cingulo", "salience"), 0.58, 0.011, 0.0),
    NetworkAging("fronto-parietal", ("fronto", "attention"), 0.58, 0.011, 0.0),
    NetworkAging("visual", ("occipital", "visual"), 0.66, 0.005, 0.0),
    NetworkAging("cerebellum", ("cerebellum",), 0.60, 0.003, 0.0),
)
OTHER_NETWORK = NetworkAging("other", (), 0.55, 0.0075, 0.0)

COUPLING_50 = 0.14            # between-network correlation of network signals at age 50
COUPLING_PER_DECADE = 0.035
LOADING_SD = 0.10             # individual scatter of region loadings
NETWORK_LOADING_SD = 0.05     # individual scatter shared by all regions of a network
COUPLING_SD = 0.06            # individual scatter of each network's coupling
MOTION_RESIDUAL = 1.0         # residual artefact (signal sd) per mm of framewise displacement
FD_LOG_SD = 0.4               # individual scatter of log mean FD around its age trend
HEAD_RADIUS_MM = 50.0         # rotations -> mm for FD (Power et al. 2012)


def match_network(name: str) -> NetworkAging:
    """The :data:`NETWORK_AGING` entry for an atlas network name (``OTHER_NETWORK`` if none)."""
    low = name.lower()
    for net in NETWORK_AGING:
        if any(m in low for m in net.match):
            return net
    return OTHER_NETWORK


def network_table(atlas: Atlas) -> pd.DataFrame:
    """One row per atlas network: the ageing parameters it gets (columns of :class:`NetworkAging`)."""
    if not atlas.has_networks:
        raise ValueError(f"synth: atlas {atlas.name!r} has no network labels; use dosenbach160 or seitzman300")
    rows = []
    for name in atlas.networks:
        eff = match_network(name)
        rows.append({"network": name, "effect": eff.key, "loading_50": eff.loading_50,
                     "decline_per_decade": eff.decline, "female_offset": eff.female_offset,
                     "male_decline_ratio": eff.male_decline_ratio})
    return pd.DataFrame(rows)


def expected_loading(networks: pd.DataFrame, age: float | np.ndarray, sex: str) -> np.ndarray:
    """(K,) or (K, n) expected network loading at functional age ``age`` for ``sex``."""
    age = np.asarray(age, dtype=float)
    male = sex == "M"
    base = networks["loading_50"].to_numpy() + networks["female_offset"].to_numpy() * (-0.5 if male else 0.5)
    decline = networks["decline_per_decade"].to_numpy() * (networks["male_decline_ratio"].to_numpy() if male else 1.0)
    lam = base[:, None] - decline[:, None] * ((np.atleast_1d(age) - 50.0) / 10.0)[None, :]
    lam = np.clip(lam, 0.1, 0.95)
    return lam[:, 0] if age.ndim == 0 else lam


def expected_coupling(age: float | np.ndarray) -> np.ndarray:
    """Expected between-network coupling ``rho`` at functional age ``age``."""
    return np.clip(COUPLING_50 + COUPLING_PER_DECADE * (np.asarray(age, dtype=float) - 50.0) / 10.0, 0.0, 0.8)


def expected_fc(atlas: Atlas, networks: pd.DataFrame, age: float, sex: str) -> np.ndarray:
    """(R, R) expected correlation matrix (before individual scatter and sampling noise)."""
    lam = expected_loading(networks, age, sex)[atlas.network_index()]
    same = atlas.network_index()[:, None] == atlas.network_index()[None, :]
    fc = np.outer(lam, lam) * np.where(same, 1.0, expected_coupling(age))
    np.fill_diagonal(fc, 1.0)
    return fc


def hrf_noise(rng: np.random.Generator, n_volumes: int, n_series: int, tr: float) -> np.ndarray:
    """(T, n) white noise convolved with the canonical HRF at ``tr``, each column unit variance."""
    from nilearn.glm.first_level import spm_hrf

    h = spm_hrf(tr, oversampling=1)
    white = rng.standard_normal((n_volumes + len(h), n_series))
    out = signal.lfilter(h, [1.0], white, axis=0)[len(h):]
    out -= out.mean(axis=0)
    return out / out.std(axis=0)


LOADING_CLIP = (0.05, 0.97)    # a region's loading is clipped to this range
COUPLING_CLIP = (0.0, 0.9)     # a network's coupling is clipped to this range


def module_index(atlas: Atlas) -> np.ndarray:
    """(R,) network index of each region; unlabelled regions (-1) form one extra module."""
    net_idx = atlas.network_index()
    if (net_idx < 0).any():
        net_idx = np.where(net_idx < 0, net_idx.max() + 1, net_idx)
    return net_idx


def expected_module_loading(atlas: Atlas, networks: pd.DataFrame, fmri_age: np.ndarray,
                            sex: np.ndarray) -> np.ndarray:
    """(n, n_modules) expected network loading of participants of functional ages ``fmri_age`` (n,)
    and sexes ``sex`` (n,) ("M"/"F"); the unlabelled module keeps :data:`OTHER_NETWORK`'s loading."""
    n_net = int(module_index(atlas).max()) + 1
    fmri_age = np.asarray(fmri_age, dtype=float)
    sex = np.asarray(sex)
    out = np.empty((len(fmri_age), n_net))
    for s in ("F", "M"):
        rows = sex == s
        if rows.any():
            lam = expected_loading(networks, fmri_age[rows], s).T          # (n_s, K)
            out[rows] = np.concatenate([lam, np.full((lam.shape[0], 1), OTHER_NETWORK.loading_50)], axis=1)[:, :n_net]
    return out


def connectivity_parameters(atlas: Atlas, networks: pd.DataFrame, fmri_age: np.ndarray, sex: np.ndarray,
                            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw participants' noise-free connectivity parameters: everything the expected (infinitely
    long scan) connectivity of a participant depends on.

    fmri_age, sex: (n,). Returns (loadings (n, R) lambda_r, couplings (n, n_modules) rho_k): each
    network's loading scatters around its expected value by :data:`NETWORK_LOADING_SD`, each region
    around its network's by :data:`LOADING_SD` (clipped to :data:`LOADING_CLIP`), each network's
    coupling around the expected one by :data:`COUPLING_SD` (clipped to :data:`COUPLING_CLIP`).
    With n = 1 the draws are those :func:`simulate_function` makes for one participant.
    """
    net_idx = module_index(atlas)
    n, n_net = len(fmri_age), int(net_idx.max()) + 1
    lam_net = expected_module_loading(atlas, networks, fmri_age, sex)
    lam_net = lam_net + NETWORK_LOADING_SD * rng.standard_normal((n, n_net))
    lam = np.clip(lam_net[:, net_idx] + LOADING_SD * rng.standard_normal((n, len(net_idx))), *LOADING_CLIP)
    rho = np.clip(expected_coupling(fmri_age)[:, None] + COUPLING_SD * rng.standard_normal((n, n_net)),
                  *COUPLING_CLIP)
    return lam, rho


@dataclass
class FunctionSample:
    """One participant's resting-state scan at region level."""

    neural: np.ndarray          # (T, R) regional signals x_r, unit variance
    residual: np.ndarray        # (T, R) residual motion artefact left after denoising
    amplitude: np.ndarray       # (R,) BOLD fluctuation amplitude in percent signal change
    motion: np.ndarray          # (T, 6) trans_x/y/z (mm), rot_x/y/z (rad)
    fd: np.ndarray              # (T,) framewise displacement (mm), fd[0] = 0
    loadings: np.ndarray        # (R,) this participant's loadings lambda_r
    coupling: np.ndarray        # (K,) this participant's couplings rho_k

    @property
    def percent(self) -> np.ndarray:
        """(T, R) denoised signal in percent signal change: amplitude * (neural + residual)."""
        return (self.neural + self.residual) * self.amplitude


def mean_fd_target(age: float, preset: Preset, rng: np.random.Generator) -> float:
    """A participant's mean framewise displacement (mm), rising with chronological age."""
    trend = preset.fd_at_20 * preset.fd_per_decade ** ((age - 20.0) / 10.0)
    return float(trend * np.exp(rng.normal(0.0, FD_LOG_SD)))


def simulate_motion(n_volumes: int, mean_fd: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rigid-body motion with heavy-tailed jumps. Returns (params (T, 6), fd (T,))."""
    inc = rng.standard_t(3, size=(n_volumes, 6))
    inc[:, 3:] /= HEAD_RADIUS_MM
    params = signal.lfilter([1.0], [1.0, -0.95], inc, axis=0)
    params -= params[0]
    fd = framewise_displacement(params)
    scale = mean_fd / max(fd[1:].mean(), 1e-9)
    return params * scale, fd * scale


def framewise_displacement(params: np.ndarray) -> np.ndarray:
    """(T,) Power et al. (2012) FD from (T, 6) [mm, mm, mm, rad, rad, rad]; the first volume is 0."""
    d = np.abs(np.diff(params, axis=0))
    fd = d[:, :3].sum(axis=1) + HEAD_RADIUS_MM * d[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


def simulate_function(atlas: Atlas, networks: pd.DataFrame, preset: Preset, n_volumes: int, tr: float,
                      fmri_age: float, age: float, sex: str, rng: np.random.Generator) -> FunctionSample:
    """One participant's regional time series (see the module docstring)."""
    net_idx = module_index(atlas)
    n_net = int(net_idx.max()) + 1
    lam, rho = (x[0] for x in connectivity_parameters(atlas, networks, np.array([fmri_age], dtype=float),
                                                       np.array([sex]), rng))

    noise = hrf_noise(rng, n_volumes, 1 + n_net + len(net_idx), tr)
    g, u, e = noise[:, :1], noise[:, 1:1 + n_net], noise[:, 1 + n_net:]
    z = np.sqrt(rho) * g + np.sqrt(1.0 - rho) * u
    neural = lam * z[:, net_idx] + np.sqrt(1.0 - lam ** 2) * e

    motion, fd = simulate_motion(n_volumes, mean_fd_target(age, preset, rng), rng)
    weight = rng.uniform(0.5, 1.0, len(net_idx))
    residual = MOTION_RESIDUAL * (fd - fd.mean())[:, None] * weight[None, :]
    amplitude = rng.uniform(0.6, 1.4, len(net_idx))
    return FunctionSample(neural=neural, residual=residual, amplitude=amplitude, motion=motion, fd=fd,
                          loadings=lam, coupling=rho)
