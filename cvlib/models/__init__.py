"""Probabilistic customer-base models, fitted by maximum likelihood (numpy/scipy).

- BetaGeoNBD: BG/NBD (Fader, Hardie & Lee 2005), purchases in non-contractual settings.
- ParetoNBD: Pareto/NBD (Schmittlein, Morrison & Colombo 1987), with Fader & Hardie's
  hypergeometric form of the likelihood.
- GammaGamma: spend per transaction (Fader & Hardie 2013).
- ShiftedBetaGeometric: contract renewals (Fader & Hardie 2007).

Estimators follow scikit-learn habits: `fit(frame)` returns self; fitted attributes end
in `_` (`params_`, `se_`, `loglik_`, `converged_`). Parameters are optimised on the
log scale; log-likelihoods are computed in log space (no overflow for large x and T).
"""
from cvlib.models.base import (  # noqa: F401  # the public names of the models
    CONVERGED,
    FitOutcome,
    FitReason,
    ModelFitError,
    NotFittedError,
    no_observation_time,
    patterns,
)
from cvlib.models.bgnbd import BetaGeoNBD, simulate_bgnbd  # noqa: F401
from cvlib.models.gammagamma import GammaGamma, simulate_spend  # noqa: F401
from cvlib.models.paretonbd import ParetoNBD  # noqa: F401
from cvlib.models.sbg import ShiftedBetaGeometric  # noqa: F401
