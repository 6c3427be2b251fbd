"""Compound layers as lists (neon's CompoundLayer), nested layer lists, initializer
names, and clear ValueErrors for bad hyperparameters (issue 11)."""
import numpy as np
import pytest

from neonlearn.layers import LRN

NAN, INF = float("nan"), float("inf")


# ---- LRN ---------------------------------------------------------------------------
@pytest.mark.parametrize("params, what", [
    ({"ascale": NAN}, "ascale"), ({"ascale": INF}, "ascale"), ({"ascale": -1.0}, "ascale"),
    ({"bpower": NAN}, "bpower"), ({"bpower": INF}, "bpower"),
])
def test_lrn_non_finite_parameters_rejected_at_configure(params, what):
    layer = LRN(3, name="norm1", **params)
    with pytest.raises(ValueError, match="norm1: %s must be" % what):
        layer.configure((4, 5, 5))
    # and after set_params from a valid layer
    layer = LRN(3, name="norm1").set_params(**params)
    with pytest.raises(ValueError, match="norm1: %s" % what):
        layer.configure((4, 5, 5))
