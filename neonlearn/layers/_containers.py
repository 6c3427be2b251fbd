"""Containers and graph nodes: Sequential and SkipNode."""
from ._base import CompoundLayer, Layer, in_shape_of

__all__ = ["Sequential", "SkipNode", "flatten_layers"]


def flatten_layers(layers):
    """Flatten nested lists/tuples of layers into one list."""
    out = []
    for layer in layers:
        if isinstance(layer, (list, tuple)):
            out.extend(flatten_layers(layer))
        elif isinstance(layer, Layer):
            out.append(layer)
        else:
            raise ValueError("Expected a neonlearn layer, got %r" % (layer,))
    return out


class Sequential(CompoundLayer):
    """Run a list of layers in order (nested lists are flattened).

    Parameters
    ----------
    layers : list of Layer
    name : str or None
    """

    def __init__(self, layers, name=None):
        self.layers = layers
        self.name = name

    def configure(self, in_obj):
        layers = flatten_layers(self.layers)
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        return self._configure_sublayers(layers, in_obj)


class SkipNode(Layer):
    """Identity layer: the shortcut branch of a residual block."""

    def fprop(self, inputs, inference=False):
        return inputs

    def bprop(self, error):
        return error
