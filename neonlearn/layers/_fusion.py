"""The model's planning pass: fused runs of layers, input gradients nobody uses.

Compound layers stay lists of their parts (``Affine`` is ``[Linear, Bias,
Activation]``); which runs of parts execute as one fused step is decided here, once,
when a model is configured (:func:`plan_network`), for every chain of layers in the
network (the parts of compound layers, containers and their branches):

- ``Linear -> Bias -> Activation``: :class:`DenseBiasAct`, the GEMM, then bias and
  activation in one kernel (``be.bias_act_fprop``), in place on the GEMM's output
  (inference: in the packed GEMM's epilogue, ``be.dense_infer``);
  backward ``be.act_bprop`` with the bias gradient in the same pass;
- ``Convolution [-> Bias] -> Activation`` on images: :class:`ConvBiasAct`, bias and
  an element-wise activation in the convolution kernel's epilogue, the bias
  gradient computed by the filter-gradient kernel;
- ``Convolution -> Bias``: :class:`ConvBias`, the bias added inside the convolution
  kernel and its gradient computed by the filter-gradient kernel;
- an ``Activation`` right after a layer whose output only it reads (Linear,
  Convolution, Deconvolution, Bias, BatchNorm or a ConvBias step):
  :class:`InPlaceActivation`, on the flat view of that output (images: one row per
  channel and sample, for element-wise transforms; no channels-last copy).

A chain runs the parts of the chains inside it (an ``Affine`` in a ``Sequential``)
as its own steps, so that a fused step costs one call.  Every other layer is its
own step.  The steps own the state their ``bprop`` needs (the activation's
outputs); the layers they run keep theirs, so no object writes into another layer
during a pass.  A layer list used without a model runs its parts one by one, with
the same results.
"""
from ._base import CompoundLayer, Layer
from ._state import StateSpec
from ._conv import Convolution, Deconvolution
from ._dense import Activation, Bias, Linear
from ._normalization import BatchNorm

__all__ = ["plan_network", "plan_fusion", "plan_steps", "DenseBiasAct", "ConvBias",
           "ConvBiasAct", "InPlaceActivation"]


class _Step(Layer):
    """A fused run of layers: runs them, owns the buffers of the fused kernels."""

    # the layers it runs (also named: linear, conv, bias, act) and their outputs
    state_spec = StateSpec(saved=("outputs",),
                           parts=("layers", "linear", "conv", "bias", "act"))
    name = None  # planned, not named: the layers it runs have the names

    def __init__(self, *layers):
        self.layers = layers

    def sublayers(self):
        return list(self.layers)

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join(l.name or type(l).__name__ for l in self.layers))


class DenseBiasAct(_Step):
    """``Linear -> Bias -> Activation``: GEMM, then bias and activation fused in
    place on the GEMM's output (no bprop needs the pre-activation: Linear keeps its
    inputs, this step the activation's outputs)."""

    def __init__(self, linear, bias, act):
        self.layers = (linear, bias, act)
        self.linear, self.bias, self.act = linear, bias, act
        self.width = linear.out_shape[-1]

    def fprop(self, inputs, inference=False):
        z = self.linear.fprop(inputs, inference, self.bias.W, self.act.transform)
        if not inference:
            self.outputs = z.reshape(-1, self.width)
        return z

    def bprop(self, error):
        e = error.reshape(-1, self.width)
        if self.act.shortcut_error:  # the cost gave d(cost)/d(pre-activation)
            delta = e
            self.be.colsum(e, self.bias.dW)
        else:
            delta = self._output(e.shape, False, key="delta")
            self.be.act_bprop(self.outputs, e, self.act.transform, delta, self.bias.dW)
        return self.linear.bprop(delta.reshape(error.shape))


class ConvBias(_Step):
    """``Convolution -> Bias``: the bias inside the convolution's kernels."""

    def __init__(self, conv, bias):
        self.layers = (conv, bias)
        self.conv, self.bias = conv, bias
        # over time, the convolution takes (and may change) the sequence lengths
        self.uses_lengths = conv.uses_lengths
        self.changes_lengths = conv.changes_lengths

    def out_lengths(self, lengths):
        return self.conv.out_lengths(lengths)

    def fprop(self, inputs, inference=False, lengths=None):
        return self.conv.fprop(inputs, inference, bias=self.bias.W, lengths=lengths)

    def bprop(self, error):
        return self.conv.bprop(error, dbias=self.bias.dW)


class ConvBiasAct(_Step):
    """``Convolution [-> Bias] -> Activation`` on images: bias and activation in the
    convolution kernel's epilogue (no pass over the output); backward, the
    activation's gradient from the outputs, then the convolution's with the bias
    gradient."""

    def __init__(self, conv, bias, act):
        self.layers = (conv, act) if bias is None else (conv, bias, act)
        self.conv, self.bias, self.act = conv, bias, act

    def fprop(self, inputs, inference=False):
        out = self.conv.fprop(inputs, inference, bias=None if self.bias is None
                              else self.bias.W, activation=self.act.transform)
        if not inference:
            self.outputs = out.reshape(out.shape[0] * out.shape[1], -1)
        return out

    def bprop(self, error):
        delta = error
        if not self.act.shortcut_error:
            e = self.be.array(error).reshape(self.outputs.shape)
            delta = self._output(e.shape, False, key="delta")
            self.be.act_bprop(self.outputs, e, self.act.transform, delta)
            delta = delta.reshape(error.shape)
        return self.conv.bprop(delta, dbias=None if self.bias is None else self.bias.dW)


class InPlaceActivation(_Step):
    """An Activation applied in place on its input, the output of the step before
    (which no bprop reads), on its flat view: ``(N * C, H * W)`` for images (an
    element-wise transform), ``(rows, features)`` otherwise."""

    def __init__(self, act):
        self.layers = (act,)
        self.act = act
        self.images = len(act.in_shape) == 3

    def fprop(self, inputs, inference=False):
        out = self.be.array(inputs)
        if self.images:
            flat = out.reshape(out.shape[0] * out.shape[1], -1)
        else:
            flat = out.reshape(-1, out.shape[-1])
        self.be.bias_act_fprop(flat, None, self.act.transform, flat)
        if not inference:
            self.outputs = flat
        return out

    def bprop(self, error):
        if self.act.shortcut_error:
            return error
        e = self.be.array(error).reshape(self.outputs.shape)
        delta = self._output(e.shape, False, key="delta")
        self.be.act_bprop(self.outputs, e, self.act.transform, delta)
        return delta.reshape(error.shape)


# outputs that only the next step reads (their own bprop does not; DenseBiasAct's
# does: they are its activation's outputs)
_OVERWRITABLE = (Linear, Convolution, Deconvolution, Bias, BatchNorm, ConvBias)


def _in_place_ok(prev, act):
    if prev is None or type(prev) not in _OVERWRITABLE or type(act) is not Activation:
        return False
    return len(act.in_shape) != 3 or act.transform.kernel is not None


def _image_act(conv, act):
    """Whether ``act`` can run in the epilogue of the image convolution ``conv``."""
    return (type(act) is Activation and not conv.temporal
            and act.transform is not None and act.transform.kernel is not None)


def plan_steps(layers, be):
    """The steps that run the chain ``layers``: fused runs and single layers."""
    steps, i, n = [], 0, len(layers)
    while i < n:
        kinds = tuple(type(layer) for layer in layers[i:i + 3])
        if kinds == (Linear, Bias, Activation):
            step, i = DenseBiasAct(*layers[i:i + 3]), i + 3
        elif kinds[:2] == (Convolution, Bias) and n > i + 2 and _image_act(
                layers[i], layers[i + 2]):
            step, i = ConvBiasAct(*layers[i:i + 3]), i + 3
        elif kinds[:1] == (Convolution,) and n > i + 1 and _image_act(
                layers[i], layers[i + 1]):
            step, i = ConvBiasAct(layers[i], None, layers[i + 1]), i + 2
        elif kinds[:2] == (Convolution, Bias):
            step, i = ConvBias(*layers[i:i + 2]), i + 2
        elif _in_place_ok(steps[-1] if steps else None, layers[i]):
            step, i = InPlaceActivation(layers[i]), i + 1
        else:
            steps.append(layers[i])
            i += 1
            continue
        step.set_backend(be)
        steps.append(step)
    return steps


def _is_chain(layer):
    """A container whose passes are the chain of its parts (CompoundLayer's own
    fprop/bprop): Sequential, Affine, Conv, Deconv, DeepBiRNN."""
    cls = type(layer)
    return (isinstance(layer, CompoundLayer) and layer.runs_in_order
            and cls.fprop is CompoundLayer.fprop and cls.bprop is CompoundLayer.bprop)


def _chain(layers):
    """``layers`` with the parts of chain containers in their place (flattened)."""
    out = []
    for layer in layers:
        if _is_chain(layer):
            out.extend(_chain(layer.layers_))
        else:
            out.append(layer)
    return out


def _walk(layer, be):
    if isinstance(layer, CompoundLayer):
        layers = layer.__dict__.get("layers_", [])
        for child in layers:
            _walk(child, be)
        if _is_chain(layer):
            layer.set_steps(plan_steps(_chain(layers), be))


def plan_fusion(root, be):
    """Set the fused steps of every chain of the configured layer ``root``."""
    _walk(root, be)


def plan_network(root, be):
    """Plan a configured network (called by the model at configure): the fused
    steps of every chain, and which layers return no input gradient (the network's
    input gradient is never used)."""
    plan_fusion(root, be)
    root.plan_input_grad(False)
