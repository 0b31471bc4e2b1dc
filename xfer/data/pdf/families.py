"""The eight density families, their parameter spaces, and the presets that pick parameters.

Each image's parameters are a pure function of (preset, seed, family, index), so any node can
regenerate an identical dataset. Parameter and support spaces are written the way the seed
study's table writes them: open-interval strings such as ``"(0, inf)"`` or ``"(a, b)"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


class _LazySpecial:
    """``scipy.special``, imported on first use (~0.3 s; scipy.stats would be ~2 s), so that
    listing the presets (``xfer --help``, ``xfer train`` on a machine without scipy) needs no
    scipy."""

    def __getattr__(self, name: str):
        from scipy import special as module

        return getattr(module, name)


special = _LazySpecial()


@dataclass(frozen=True)
class Family:
    """One density family as three numpy functions. Values may be scalars or arrays (the audit
    evaluates hundreds of parameter sets at once). Only ``scipy.special`` is used, for the
    gamma-function family: scipy.stats would cost every generator worker ~2 s to import."""

    name: str
    params: tuple[tuple[str, str], ...]  # (parameter name, parameter space), in value order
    support: str  # support space
    sample: Callable[..., np.ndarray]  # (rng, size, *values) -> observations
    pdf: Callable[..., np.ndarray]  # (x, *values) -> density
    ppf: Callable[..., np.ndarray]  # (p, *values) -> quantile

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.params)


def _beta_pdf(x, a, b):
    return np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - special.betaln(a, b))


def _gamma_pdf(x, shape, scale):
    return np.exp((shape - 1) * np.log(x / scale) - x / scale - special.gammaln(shape)) / scale


def _weibull_pdf(x, scale, shape):
    z = x / scale
    return shape / scale * z ** (shape - 1) * np.exp(-(z ** shape))


def _laplace_ppf(p, loc, scale):
    return loc - scale * np.sign(p - 0.5) * np.log1p(-2 * np.abs(p - 0.5))


# Gamma's beta. The study's table gives gamma "Alpha, Beta" and says no more. Statistics texts
# write gamma(alpha, beta) with beta a RATE, density x^(alpha-1) e^(-beta x) (scipy: scale =
# 1/beta); some code libraries take a scale instead. "rate" is the default; "scale" is the other
# reading, offered because the text allows it. The two draw different classes at the study's
# values: gamma(1.5, rate 0.5) IS chi2(3) (chi2(k) = gamma(k/2, rate 1/2)), while gamma(1.5,
# scale 0.5) is chi2(3) shrunk 4x, a change of scale that only the tick labels show.
GAMMA_BETA_READINGS = ("rate", "scale")
DEFAULT_GAMMA_BETA = "rate"


def _gamma(beta_reading: str) -> Family:
    def scale(beta):  # numpy-friendly: beta may be an array of parameter sets
        return 1.0 / beta if beta_reading == "rate" else beta

    return Family("gamma", (("alpha", "(0, inf)"), ("beta", "(0, inf)")), "(0, inf)",
                  lambda rng, size, a, b: rng.gamma(a, scale(b), size),
                  lambda x, a, b: _gamma_pdf(x, a, scale(b)),
                  lambda p, a, b: scale(b) * special.gammaincinv(a, p))


# Parameter names and their order are the study's table's, family by family (lower case).
_FAMILIES = (
    Family("beta", (("alpha", "(0, inf)"), ("beta", "(0, inf)")), "(0, 1)",
           lambda rng, size, a, b: rng.beta(a, b, size), _beta_pdf,
           lambda p, a, b: special.betaincinv(a, b, p)),
    Family("chi2", (("df", "(0, inf)"),), "(0, inf)",
           lambda rng, size, df: rng.chisquare(df, size),
           lambda x, df: _gamma_pdf(x, df / 2, 2.0),  # chi2(k) is gamma(k/2, scale 2)
           lambda p, df: 2.0 * special.gammaincinv(df / 2, p)),
    Family("exponential", (("scale", "(0, inf)"),), "(0, inf)",
           lambda rng, size, scale: rng.exponential(scale, size),
           lambda x, scale: np.exp(-x / scale) / scale,
           lambda p, scale: -scale * np.log1p(-p)),
    _gamma(DEFAULT_GAMMA_BETA),
    Family("laplace", (("location", "(-inf, inf)"), ("scale", "(0, inf)")), "(-inf, inf)",
           lambda rng, size, loc, scale: rng.laplace(loc, scale, size),
           lambda x, loc, scale: np.exp(-np.abs(x - loc) / scale) / (2 * scale), _laplace_ppf),
    Family("normal", (("location", "(-inf, inf)"), ("scale", "(0, inf)")), "(-inf, inf)",
           lambda rng, size, loc, scale: rng.normal(loc, scale, size),
           lambda x, loc, scale: np.exp(-0.5 * ((x - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi)),
           lambda p, loc, scale: loc + scale * special.ndtri(p)),
    Family("uniform", (("a", "(-inf, b)"), ("b", "(a, inf)")), "(a, b)",
           lambda rng, size, a, b: rng.uniform(a, b, size),
           lambda x, a, b: np.ones_like(x, dtype=float) / (b - a),
           lambda p, a, b: a + p * (b - a)),
    Family("weibull", (("scale", "(0, inf)"), ("shape", "(0, inf)")), "(0, inf)",
           lambda rng, size, scale, shape: scale * rng.weibull(shape, size), _weibull_pdf,
           lambda p, scale, shape: scale * (-np.log1p(-p)) ** (1 / shape)),
)
_BY_NAME: dict[str, Family] = {f.name: f for f in _FAMILIES}
_GAMMA_BY_READING = {reading: _gamma(reading) for reading in GAMMA_BETA_READINGS}


FAMILY_NAMES = tuple(f.name for f in _FAMILIES)


def family(name: str, gamma_beta: str = DEFAULT_GAMMA_BETA) -> Family:
    """The family ``name``; ``gamma_beta`` says how gamma's beta is read (rate or scale)."""
    if name == "gamma":
        return _GAMMA_BY_READING[check_gamma_beta(gamma_beta)]
    return _BY_NAME[name]


def check_gamma_beta(reading: str) -> str:
    """``reading`` if it is one of GAMMA_BETA_READINGS; else UsageError (exit 2)."""
    if reading not in GAMMA_BETA_READINGS:
        from xfer.errors import choice_error

        raise choice_error("gamma-beta", reading, GAMMA_BETA_READINGS)
    return reading


# --- presets ---------------------------------------------------------------------------------
# `seed`: the study's table, family by family: beta (alpha 1.5, beta 0.5), chi2 (df 3),
# exponential (scale 0.5), gamma (alpha 1.5, beta 0.5), laplace and normal (location 0, scale
# 0.5), uniform (a 0, b 1), weibull (scale 0.5, shape 1). What this implies, and what `xfer data
# audit` reports: weibull with shape 1 IS the exponential, and with beta read as a rate gamma(1.5,
# 0.5) IS chi2(3). Two pairs of classes are one distribution each, which caps any classifier at
# 6/8 = 75%. Read as a scale, gamma is chi2(3) rescaled: only the tick labels tell them apart.
SEED_PARAMETERS: dict[str, tuple[float, ...]] = {
    "beta": (1.5, 0.5),          # alpha, beta
    "chi2": (3.0,),              # df
    "exponential": (0.5,),       # scale
    "gamma": (1.5, 0.5),         # alpha, beta (a rate unless the dataset says scale)
    "laplace": (0.0, 0.5),       # location, scale
    "normal": (0.0, 0.5),        # location, scale
    "uniform": (0.0, 1.0),       # a, b
    "weibull": (0.5, 1.0),       # scale, shape
}

# `varied`: parameters drawn uniformly per image from ranges chosen so that the families stay
# visually distinct once the axes autoscale (location and scale never change a plot's shape,
# only the shape parameters do). The audit checks the choice (10,000 images, seed 0): with
# tick labels it finds no confusable pair at 32, 64 or 256 px (ceiling 1.0). Without them,
# none at 256 px; at 64 px the most lopsided betas (alpha well below beta) draw a curve within
# a pixel of gamma's spike at 0 (14% of beta/gamma images; ceiling 0.998), and at 32 px more
# (57%; 0.987), one pixel then being 4% of the axes height. Those pairs are scale-only:
# beta's x axis ends at 1, gamma's well beyond, which the tick labels show.
# Each range's reason:
#   beta     alpha, beta in [0.55, 0.75]: U-shaped, unlike any other family. Both ends must
#            rise visibly: with alpha far below beta one end dominates and the plot becomes
#            gamma's spike at 0 (the audit flagged 49% of beta/gamma at [0.3, 0.8]).
#   chi2     df in [3, 6]: chi2(df) is gamma(df/2), so gamma's shape must avoid [1.5, 3]
#   exponential scale in [0.5, 2]: one shape at any scale
#   gamma    alpha in [0.3, 0.6]: a spike at 0 (density -> inf), unlike exponential (alpha 1);
#            beta in [0.5, 2] under either reading (the reading only changes the scale)
#   laplace  location in [-1, 1], scale in [0.5, 2]: the cusp
#   normal   location in [-1, 1], scale in [0.5, 2]
#   uniform  a in [-1, 0], b - a in [0.5, 2]: a flat line
#   weibull  scale in [0.5, 2], shape in [1.8, 2.4]: a skewed hump; shape 1 is exponential, and
#            shape ~3.6 looks like a normal, so the range stays between the two
VARIED_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "beta": ((0.55, 0.75), (0.55, 0.75)),
    "chi2": ((3.0, 6.0),),
    "exponential": ((0.5, 2.0),),
    "gamma": ((0.3, 0.6), (0.5, 2.0)),  # alpha, beta
    "laplace": ((-1.0, 1.0), (0.5, 2.0)),
    "normal": ((-1.0, 1.0), (0.5, 2.0)),
    "uniform": ((-1.0, 0.0), (0.5, 2.0)),  # a, and the width b - a
    "weibull": ((0.5, 2.0), (1.8, 2.4)),  # scale, shape
}


def _seed_params(name: str, rng: np.random.Generator) -> tuple[float, ...]:
    return SEED_PARAMETERS[name]


def _varied_params(name: str, rng: np.random.Generator) -> tuple[float, ...]:
    values = tuple(float(rng.uniform(lo, hi)) for lo, hi in VARIED_RANGES[name])
    if name == "uniform":  # drawn as (a, width); stored as the family's own (a, b)
        return (values[0], values[0] + values[1])
    return values


PRESETS: dict[str, Callable[[str, np.random.Generator], tuple[float, ...]]] = {
    "seed": _seed_params,
    "varied": _varied_params,
}
