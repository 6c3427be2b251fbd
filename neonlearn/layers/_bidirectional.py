"""Stacks of bidirectional recurrent layers: BiSum, DeepBiRNN and DeepBiLSTM
(neon's ``recurrent.py``; the BiRNN and BiLSTM layers are in ``_recurrent``)."""
import numbers

from ._base import CompoundLayer, Layer, sequence_shape
from ._normalization import BatchNorm
from ._recurrent import BiLSTM, BiRNN

__all__ = ["BiSum", "DeepBiRNN", "DeepBiLSTM"]


class BiSum(Layer):
    """Sum the two directions of a bidirectional layer: ``(T, 2H) -> (T, H)``.

    ``y[..., :] = x[..., :H] + x[..., H:]`` (neon's ``BiSum``); the error goes back
    unchanged to both halves.  Padded steps of a bidirectional layer are zero, so
    they stay zero.

    Parameters
    ----------
    name : str or None
    """

    def __init__(self, name=None):
        self.name = name

    def configure(self, in_obj):
        owner = self.display_name
        self.in_shape = sequence_shape(in_obj, owner)
        T, F = self.in_shape
        if F % 2:
            raise ValueError("%s: the input has %d features; BiSum needs an even number "
                             "(the forward and backward outputs side by side)"
                             % (owner, F))
        self.out_shape = (T, F // 2)
        return self

    def fprop(self, inputs, inference=False):
        self._check_input(inputs)
        H = self.out_shape[1]
        out = self._output((inputs.shape[0],) + self.out_shape, inference)
        self.be.xp.add(inputs[:, :, :H], inputs[:, :, H:], out=out)
        return out

    def bprop(self, error):
        if self.skip_input_grad:
            return None
        H = self.out_shape[1]
        dx = self._output((error.shape[0],) + self.in_shape, False, key="dx")
        dx[:, :, :H] = error
        dx[:, :, H:] = error
        return dx


class DeepBiRNN(CompoundLayer):
    """``depth`` stacked :class:`BiRNN` layers, as neon builds them.

    Without ``bi_sum`` (neon's default) the layers after the first are built with
    ``split_inputs=True``: the forward direction of a layer reads the forward half
    of the previous layer's output and the backward direction the backward half,
    and the output is the ``2H`` concatenation ``(T, 2H)``.  With ``bi_sum=True`` a
    :class:`BiSum` follows every BiRNN, each BiRNN reads the whole ``H`` sums of the
    previous one, and the output is ``(T, H)``.

    Parameters
    ----------
    nout : int
        Hidden units per direction.
    init, init_inner, activation, reset_cells
        As for :class:`~neonlearn.layers.Recurrent`.
    depth : int, default=1
    batch_norm : bool, default=False
        Insert BatchNorm after every BiRNN (and its BiSum) but the last.  (neon
        normalized the input projection inside the layer; this is the closest
        layer-level equivalent.)
    bi_sum : bool, default=False
        Sum the two directions of every layer (:class:`BiSum`) instead of
        concatenating them.
    name : str or None
        The parts are named ``name``, ``name_1``, ... (``name_bisum0`` ...,
        ``name_bnorm0`` ...).
    """

    _bi = BiRNN

    def __init__(self, nout, init=None, init_inner=None, activation=None,
                 reset_cells=True, depth=1, batch_norm=False, bi_sum=False, name=None):
        self.nout = nout
        self.init = init
        self.init_inner = init_inner
        self.activation = activation
        self.reset_cells = reset_cells
        self.depth = depth
        self.batch_norm = batch_norm
        self.bi_sum = bi_sum
        self.name = name

    def _bi_params(self):
        return dict(output_size=self.nout, init=self.init, init_inner=self.init_inner,
                    activation=self.activation, reset_cells=self.reset_cells)

    def _part_specs(self, base):
        """``(class, name, split_inputs)`` of every part, in order."""
        plan = []
        for k in range(self.depth):
            plan.append((self._bi, base if k == 0 else "%s_%d" % (base, k),
                         k > 0 and not self.bi_sum))
            if self.bi_sum:
                plan.append((BiSum, "%s_bisum%d" % (base, k), None))
            if self.batch_norm and k < self.depth - 1:
                plan.append((BatchNorm, "%s_bnorm%d" % (base, k), None))
        return plan

    def configure(self, in_obj):
        base = self.display_name
        if (not isinstance(self.depth, numbers.Integral) or isinstance(self.depth, bool)
                or self.depth < 1):
            raise ValueError("%s: depth must be a positive integer, got %r"
                             % (base, self.depth))
        plan = self._part_specs(base)
        old = self.__dict__.get("layers_")
        if old is None or [type(l) for l in old] != [cls for cls, _, _ in plan]:
            old = [cls(name=name) if cls is not self._bi else None
                   for cls, name, _ in plan]
        layers = []
        for layer, (cls, name, split) in zip(old, plan):
            if cls is self._bi:
                params = dict(self._bi_params(), split_inputs=split)
                if layer is None:
                    layer = cls(name=name, **params)
                else:  # warm start: keep the weights, refresh the hyperparameters
                    layer.set_params(**params)
            layers.append(layer)
        return self._configure_sublayers(layers, in_obj)


class DeepBiLSTM(DeepBiRNN):
    """``depth`` stacked :class:`BiLSTM` layers, built as :class:`DeepBiRNN` builds
    its BiRNN layers.

    Parameters
    ----------
    nout : int
    init, init_inner, activation, gate_activation, reset_cells, depth, batch_norm,
    bi_sum, name
        As for :class:`DeepBiRNN` and :class:`~neonlearn.layers.LSTM`.
    """

    _bi = BiLSTM

    def __init__(self, nout, init=None, init_inner=None, activation=None,
                 gate_activation=None, reset_cells=True, depth=1, batch_norm=False,
                 bi_sum=False, name=None):
        self.nout = nout
        self.init = init
        self.init_inner = init_inner
        self.activation = activation
        self.gate_activation = gate_activation
        self.reset_cells = reset_cells
        self.depth = depth
        self.batch_norm = batch_norm
        self.bi_sum = bi_sum
        self.name = name

    def _bi_params(self):
        params = super()._bi_params()
        params["gate_activation"] = self.gate_activation
        return params
