"""Recurrent layers: Recurrent, LSTM, GRU and their bidirectional versions BiRNN and
BiLSTM (the deep stacks and BiSum are in ``_bidirectional``, the summaries and masks
in ``_sequence_layers``).

Sequences are batch-first ``(N, T, F)``; a recurrent layer's ``in_shape`` is
``(T, F)`` and its ``out_shape`` ``(T, H)`` (every time step is output).

Variable-length sequences
-------------------------
Sequences shorter than ``T`` are right-padded.  Their lengths are an argument of
``fprop(inputs, inference=False, lengths=None)`` (int array of shape ``(N,)``, or
None when every sequence has ``T`` steps), passed by the containers to every layer
whose class sets ``uses_lengths``; a layer keeps the lengths of its last training
batch (``lengths_``) for its own ``bprop``.  Padded steps output zeros and receive
no gradient, so the outputs and gradients of the valid steps are exactly those of
the unpadded sequences.  The bidirectional layers run their backward direction from
each sequence's own end.

State
-----
neon's ``reset_cells=False`` carried the hidden state across minibatches.  In
neonlearn every sample is an independent sequence, so the default is
``reset_cells=True`` (state starts at zero for every minibatch).  With
``reset_cells=False`` the last state of a training batch is the initial state of the
next training batch of the same size (truncated backpropagation through time: no
gradient flows into the previous batch); call :meth:`reset_state` between streams.
Inference (``fprop(..., inference=True)``, so ``predict``) always starts from a zero
state and leaves the carried state alone: it is a pure function of its input, the
same for repeated calls, concurrent threads and any batch composition.
"""
import numbers

import numpy as np

from ..initializers import check_initializer
from ..transforms import Logistic, Tanh, get_transform
from ._base import ParameterLayer, sequence_shape
from ._checks import check_lengths
from ._state import StateSpec

__all__ = ["Recurrent", "LSTM", "GRU", "BiRNN", "BiLSTM"]


class Recurrent(ParameterLayer):
    """Fully connected recurrent layer: ``h_t = act(W_input x_t + W_recur h_{t-1} + b)``.

    Parameters
    ----------
    output_size : int
        Number of hidden units ``H``.
    init : Initializer
        Fills the input weights ``W_input``.
    init_inner : Initializer or None
        Fills the recurrent weights ``W_recur`` (``init`` when None).  Biases start
        at zero.
    activation : Transform or None
        Element-wise transform (Tanh when None).
    reset_cells : bool, default=True
        Start every minibatch from a zero state (independent sequences).  False
        carries the state of a training batch to the next training batch of the same
        size (neon's stateful mode, within ``fit``); inference always starts from a
        zero state and does not change the carried state, so ``predict`` gives the
        same outputs on every call.
    name : str or None

    Attributes
    ----------
    W_input : ndarray of shape (ngates * H, F)
        Input weights (``W`` is an alias); gradient ``dW_input`` (``dW``).
    W_recur : ndarray of shape (ngates * H, H)
        Recurrent weights; gradient ``dW_recur``.
    b : ndarray of shape (ngates * H,)
        Biases; gradient ``db``.
    """

    ngates = 1
    uses_lengths = True

    state_spec = StateSpec(
        params={"W_input": "dW_input", "W_recur": "dW_recur", "b": "db"},
        # _state: what a stateful layer (reset_cells=False) carries between batches
        saved=("inputs", "h", "h0", "lengths_", "_state"))

    def __init__(self, output_size, init=None, init_inner=None, activation=None,
                 reset_cells=True, name=None):
        self.output_size = output_size
        self.init = init
        self.init_inner = init_inner
        self.activation = activation
        self.reset_cells = reset_cells
        self.name = name

    # ---- set-up ------------------------------------------------------------------
    def _transforms(self):
        self.activation_ = get_transform(self.activation) or Tanh()
        self.be.check_recurrent_transform(self.activation_, "activation")

    def configure(self, in_obj):
        owner = self.display_name
        self.in_shape = sequence_shape(in_obj, owner)
        H = self.output_size
        if not isinstance(H, numbers.Integral) or isinstance(H, bool) or H < 1:
            raise ValueError("%s: output_size must be a positive integer, got %r"
                             % (owner, H))
        self._transforms()
        self.H = int(H)
        self.nin = self.in_shape[1]
        self.out_shape = (self.in_shape[0], self.H)
        G = self.ngates * self.H
        self.weight_shape = (G, self.nin)
        self.recur_shape = (G, self.H)
        return self

    def allocate(self):
        if (getattr(self, "W_input", None) is not None
                and self.W_input.shape == self.weight_shape
                and self.W_recur.shape == self.recur_shape):
            return  # keep trained weights (warm start)
        owner = self.display_name
        if self.init is None:
            raise ValueError("%s needs an initializer: pass init=GlorotUniform() or "
                             "similar" % owner)
        be = self.be
        W = np.empty(self.weight_shape)
        check_initializer(self.init, owner).fill(W, be.rng)
        U = np.empty(self.recur_shape)
        inner, what = ((self.init_inner, "init_inner") if self.init_inner is not None
                       else (self.init, "init"))
        check_initializer(inner, owner, what).fill(U, be.rng)
        self.W_input = be.array(W)
        self.W_recur = be.array(U)
        self.b = be.zeros((self.recur_shape[0],))
        self.dW_input = be.zeros(self.weight_shape)
        self.dW_recur = be.zeros(self.recur_shape)
        self.db = be.zeros((self.recur_shape[0],))
        self.states = []
        self.reset_state()

    @property
    def W(self):
        """``W_input`` (neon's name of a parameter layer's weights)."""
        return self.W_input

    @property
    def dW(self):
        return self.dW_input

    def param_grads(self):
        return [(self.W_input, self.dW_input), (self.W_recur, self.dW_recur),
                (self.b, self.db)]

    def reset_state(self):
        """Forget the carried state (stateful mode, ``reset_cells=False``)."""
        self._state = None

    # ---- initial state -----------------------------------------------------------------
    def _initial_state(self, N, inference, n_arrays):
        """Zero state, or in training the state carried from the previous batch
        (stateful)."""
        state = self.__dict__.get("_state")
        if (not inference and not self.reset_cells and state is not None
                and state[0].shape[0] == N):
            return state
        out = []
        for k in range(n_arrays):
            z = self._output((N, self.H), inference, key="state%d" % k)
            z[...] = 0
            out.append(z)
        return tuple(out)

    def _keep_state(self, inference, *arrays):
        if not self.reset_cells and not inference:
            self._state = tuple(a[:, -1, :].copy() for a in arrays)

    # ---- forward and backward ------------------------------------------------------------
    def _project(self, inputs, inference, lengths):
        """Input projection of the valid time steps, ``(N, T, ngates*H)``
        (:meth:`~neonlearn.backends.Backend.project_steps`)."""
        self._check_input(inputs)
        N, T = inputs.shape[0], self.in_shape[0]
        x = inputs.reshape(N, T, self.nin)
        Z = self._output((N, T, self.recur_shape[0]), inference, key="Z")
        self.be.project_steps(x, self.W_input, lengths, Z)
        if not inference:
            self.inputs = x.reshape(-1, self.nin)
        return Z

    def _recurrent_grads(self, dZ):
        """``dW_recur`` as one GEMM over all steps."""
        h_prev = self._output(self.h.shape, False, key="h_prev")
        self.be.recurrent_weight_grad(dZ, self.h, self.h0, h_prev, self.dW_recur)

    def _input_grads(self, dZ):
        """Input-weight, bias and input gradients from the pre-activation grads."""
        be = self.be
        dZ2 = dZ.reshape(-1, self.recur_shape[0])
        be.matmul(dZ2.T, self.inputs, out=self.dW_input)
        be.colsum(dZ2, self.db)
        if self.skip_input_grad:
            return None
        dx = self._output((dZ2.shape[0], self.nin), False, key="dx")
        be.matmul(dZ2, self.W_input, out=dx)
        return dx.reshape((dZ.shape[0],) + self.in_shape)

    def fprop(self, inputs, inference=False, lengths=None):
        N, T = inputs.shape[0], self.in_shape[0]
        lengths = check_lengths(lengths, N, T, self.display_name)
        Z = self._project(inputs, inference, lengths)
        (h0,) = self._initial_state(N, inference, 1)
        h = self._output((N, T, self.H), inference)
        R = self._output((N, self.H), inference, key="R")
        self.be.rnn_fprop(Z, self.W_recur, self.b, h0, lengths, self.activation_, h, R)
        self._keep_state(inference, h)
        if not inference:
            self.h, self.h0, self.lengths_ = h, h0, lengths
        return h

    def bprop(self, error):
        N, T = error.shape[0], self.in_shape[0]
        err = self.be.array(error)
        dZ = self._output((N, T, self.recur_shape[0]), False, key="dZ")
        dh = self._output((N, self.H), False, key="dh")
        self.be.rnn_bprop(err, self.h, self.W_recur, self.lengths_, self.activation_,
                          dZ, dh)
        self._recurrent_grads(dZ)
        return self._input_grads(dZ)


class _GatedRecurrent(Recurrent):
    """What LSTM and GRU share: the gate activation and the gate-gradient buffer."""

    def __init__(self, output_size, init=None, init_inner=None, activation=None,
                 gate_activation=None, reset_cells=True, name=None):
        self.output_size = output_size
        self.init = init
        self.init_inner = init_inner
        self.activation = activation
        self.gate_activation = gate_activation
        self.reset_cells = reset_cells
        self.name = name

    def _transforms(self):
        super()._transforms()
        self.gate_activation_ = get_transform(self.gate_activation) or Logistic()
        self.be.check_recurrent_transform(self.gate_activation_, "gate_activation")

    def _gate_grads(self, shape):
        """The buffer of the gate pre-activation gradients: the forward pass's gates
        where the backend's kernels may overwrite them (their last reader), else a
        buffer of its own; a forward pass's state serves one backward pass."""
        if self.be.gate_grads_over_gates:
            return self.gates
        return self._output(shape, False, key="dZ")


class LSTM(_GatedRecurrent):
    """Long short-term memory with neon's gate order **i, f, o, g**.

    ``i, f, o = gate_act(.)``, ``g = act(.)``, ``c_t = f * c_{t-1} + i * g``,
    ``h_t = o * act(c_t)``, each ``(.) = W_input[k] x_t + W_recur[k] h_{t-1} + b[k]``
    with ``k`` the gate's block of ``H`` rows.

    Parameters
    ----------
    output_size : int
    init : Initializer
    init_inner : Initializer or None
    activation : Transform or None
        Tanh when None.
    gate_activation : Transform or None
        Logistic when None.
    reset_cells : bool, default=True
    name : str or None

    Attributes
    ----------
    W_input : ndarray of shape (4 * H, F)
    W_recur : ndarray of shape (4 * H, H)
    b : ndarray of shape (4 * H,)
    """

    state_spec = StateSpec(saved=("c", "c0", "gates"))

    ngates = 4

    def fprop(self, inputs, inference=False, lengths=None):
        N, T, H = inputs.shape[0], self.in_shape[0], self.H
        lengths = check_lengths(lengths, N, T, self.display_name)
        Z = self._project(inputs, inference, lengths)
        h0, c0 = self._initial_state(N, inference, 2)
        # inference keeps the running step's gates and the last two cells only
        gates = self._output((N, 1 if inference else T, 4 * H), inference, key="gates")
        c = self._output((N, 2 if inference else T, H), inference, key="c")
        h = self._output((N, T, H), inference)
        R = self._output((N, 4 * H), inference, key="R")
        self.be.lstm_fprop(Z, self.W_recur, self.b, h0, c0, lengths, self.activation_,
                           self.gate_activation_, gates, c, h, R)
        self._keep_state(inference, h, c)
        if not inference:
            self.h, self.c, self.gates = h, c, gates
            self.h0, self.c0, self.lengths_ = h0, c0, lengths
        return h

    def bprop(self, error):
        N, T, H = error.shape[0], self.in_shape[0], self.H
        err = self.be.array(error)
        dZ = self._gate_grads((N, T, 4 * H))
        dh = self._output((N, H), False, key="dh")
        dc = self._output((N, H), False, key="dc")
        self.be.lstm_bprop(err, self.gates, self.c, self.c0, self.W_recur, self.lengths_,
                           self.activation_, self.gate_activation_, dZ, dh, dc)
        self._recurrent_grads(dZ)
        return self._input_grads(dZ)


class GRU(_GatedRecurrent):
    """Gated recurrent unit with neon's gate order **r, z, candidate**.

    ``r, z = gate_act(W_input x_t + W_recur h_{t-1} + b)``,
    ``cand = act(W_input_c x_t + W_recur_c (r * h_{t-1}) + b_c)``,
    ``h_t = (1 - z) * h_{t-1} + z * cand``.

    Parameters
    ----------
    output_size : int
    init : Initializer
    init_inner : Initializer or None
    activation : Transform or None
        Tanh when None.
    gate_activation : Transform or None
        Logistic when None.
    reset_cells : bool, default=True
    name : str or None

    Attributes
    ----------
    W_input : ndarray of shape (3 * H, F)
    W_recur : ndarray of shape (3 * H, H)
    b : ndarray of shape (3 * H,)
    """

    state_spec = StateSpec(saved=("rh", "gates"))

    ngates = 3

    def fprop(self, inputs, inference=False, lengths=None):
        N, T, H = inputs.shape[0], self.in_shape[0], self.H
        lengths = check_lengths(lengths, N, T, self.display_name)
        Z = self._project(inputs, inference, lengths)
        (h0,) = self._initial_state(N, inference, 1)
        gates = self._output((N, T, 3 * H), inference, key="gates")
        rh = self._output((N, T, H), inference, key="rh")
        h = self._output((N, T, H), inference)
        R = self._output((N, 3 * H), inference, key="R")
        self.be.gru_fprop(Z, self.W_recur, self.b, h0, lengths, self.activation_,
                          self.gate_activation_, gates, rh, h, R)
        self._keep_state(inference, h)
        if not inference:
            self.h, self.rh, self.gates = h, rh, gates
            self.h0, self.lengths_ = h0, lengths
        return h

    def bprop(self, error):
        N, T, H = error.shape[0], self.in_shape[0], self.H
        err = self.be.array(error)
        dZ = self._gate_grads((N, T, 3 * H))
        dh = self._output((N, H), False, key="dh")
        drh = self._output((N, H), False, key="drh")
        self.be.gru_bprop(err, self.gates, self.h, self.h0, self.W_recur, self.lengths_,
                          self.activation_, self.gate_activation_, dZ, dh, drh)
        h_prev = self._output((N, T, H), False, key="h_prev")
        self.be.gru_weight_grad(dZ, self.h, self.h0, self.rh, h_prev, self.dW_recur)
        return self._input_grads(dZ)


# ------------------------------------------------------------------------------------
# Bidirectional layers
# ------------------------------------------------------------------------------------
class BiRNN(ParameterLayer):
    """Bidirectional recurrent layer: a forward and a backward :class:`Recurrent`
    whose outputs are concatenated, ``(N, T, 2H)``.

    The backward direction reads each sequence from its own last valid step.  Its
    two directions are the sublayers ``fwd_`` and ``bwd_`` (weights ``fwd_.W_input``,
    ..., ``bwd_.b``); ``W`` is an alias of the forward input weights.

    Parameters
    ----------
    output_size : int
        Hidden units per direction.
    init, init_inner, activation, reset_cells, name
        As for :class:`Recurrent`.
    split_inputs : bool, default=False
        neon's option for inputs that come from two sources: the ``F`` input
        features (``F`` even) are split in half, the forward direction reads the
        first ``F/2`` and the backward direction the last ``F/2`` (after another
        bidirectional layer: each direction continues its own direction).
    """

    uses_lengths = True
    _cell = Recurrent
    # the directions' parameters are theirs; the optimizer's states are this layer's
    state_spec = StateSpec(params={}, saved=("lengths_",), parts=("fwd_", "bwd_"))

    def __init__(self, output_size, init=None, init_inner=None, activation=None,
                 reset_cells=True, split_inputs=False, name=None):
        self.output_size = output_size
        self.init = init
        self.init_inner = init_inner
        self.activation = activation
        self.reset_cells = reset_cells
        self.split_inputs = split_inputs
        self.name = name

    def _cell_params(self):
        return dict(output_size=self.output_size, init=self.init,
                    init_inner=self.init_inner, activation=self.activation,
                    reset_cells=True)

    def set_backend(self, backend):
        self.be = backend
        for cell in (self.__dict__.get("fwd_"), self.__dict__.get("bwd_")):
            if cell is not None:
                cell.set_backend(backend)

    def configure(self, in_obj):
        if not self.reset_cells:
            raise ValueError("%s: bidirectional layers need reset_cells=True (the "
                             "backward direction sees the whole sequence)"
                             % self.display_name)
        base = self.display_name
        T, F = sequence_shape(in_obj, base)
        if self.split_inputs and F % 2:
            raise ValueError("%s: split_inputs=True needs an even number of input "
                             "features, got %d" % (base, F))
        cell_in = (T, F // 2) if self.split_inputs else (T, F)
        params = self._cell_params()
        for key, suffix in (("fwd_", "_fwd"), ("bwd_", "_bwd")):
            cell = self.__dict__.get(key)
            if cell is None or type(cell) is not self._cell:
                cell = self._cell(name=base + suffix, **params)
                setattr(self, key, cell)
            else:  # keep the cell (and its weights, for warm starts), refresh params
                cell.set_params(**params)
            cell.set_backend(self.be)
            cell.configure(cell_in)
        self.in_shape = (T, F)
        self.H = self.fwd_.H
        self.out_shape = (self.in_shape[0], 2 * self.H)
        self.weight_shape = self.fwd_.weight_shape
        return self

    def allocate(self):
        self.fwd_.allocate()
        self.bwd_.allocate()
        if not hasattr(self, "states"):
            self.states = []

    @property
    def W(self):
        """The forward direction's ``W_input``."""
        return self.fwd_.W_input

    @property
    def dW(self):
        return self.fwd_.dW_input

    def weights(self):
        return self.fwd_.weights() + self.bwd_.weights()

    def param_grads(self):
        return self.fwd_.param_grads() + self.bwd_.param_grads()

    def plan_input_grad(self, needed):
        self.skip_input_grad = not needed
        self.fwd_.plan_input_grad(needed)
        self.bwd_.plan_input_grad(needed)

    def fprop(self, inputs, inference=False, lengths=None):
        self._check_input(inputs)
        be, H = self.be, self.H
        N, T = inputs.shape[0], self.in_shape[0]
        lengths = check_lengths(lengths, N, T, self.display_name)
        x = xf = xb = be.array(inputs)
        if self.split_inputs:  # contiguous halves, as the cells' GEMMs read them
            F2 = self.fwd_.nin
            xf = self._output((N, T, F2), inference, key="xf")
            xf[...] = x[:, :, :F2]
            xb = self._output((N, T, F2), inference, key="xb")
            xb[...] = x[:, :, F2:]
        hf = self.fwd_.fprop(xf, inference, lengths=lengths)
        xr = be.reverse_sequences(xb, lengths, self._output(xb.shape, inference,
                                                            key="xr"))
        hbr = self.bwd_.fprop(xr, inference, lengths=lengths)
        hb = be.reverse_sequences(hbr, lengths, self._output(hbr.shape, inference,
                                                             key="hb"))
        out = self._output((N, T, 2 * H), inference)
        out[:, :, :H] = hf
        out[:, :, H:] = hb
        if not inference:
            self.lengths_ = lengths
        return out

    def bprop(self, error):
        be, H = self.be, self.H
        N, T = error.shape[0], self.in_shape[0]
        ef = self._output((N, T, H), False, key="ef")
        ef[...] = error[:, :, :H]
        eb = self._output((N, T, H), False, key="eb")
        eb[...] = error[:, :, H:]
        ebr = be.reverse_sequences(eb, self.lengths_,
                                   self._output((N, T, H), False, key="ebr"))
        dxf = self.fwd_.bprop(ef)
        dxbr = self.bwd_.bprop(ebr)
        if self.skip_input_grad:
            return None
        dx = be.reverse_sequences(dxbr, self.lengths_,
                                  self._output(dxbr.shape, False, key="dx"))
        if self.split_inputs:
            F2 = self.fwd_.nin
            both = self._output((N, T, 2 * F2), False, key="dx_both")
            both[:, :, :F2] = dxf
            both[:, :, F2:] = dx
            return both
        dx += dxf
        return dx


class BiLSTM(BiRNN):
    """Bidirectional :class:`LSTM`: outputs ``(N, T, 2H)``.

    Parameters
    ----------
    output_size : int
    init, init_inner, activation, gate_activation, reset_cells, name
        As for :class:`LSTM`.
    split_inputs : bool, default=False
        As for :class:`BiRNN`.
    """

    _cell = LSTM

    def __init__(self, output_size, init=None, init_inner=None, activation=None,
                 gate_activation=None, reset_cells=True, split_inputs=False, name=None):
        self.output_size = output_size
        self.init = init
        self.init_inner = init_inner
        self.activation = activation
        self.gate_activation = gate_activation
        self.reset_cells = reset_cells
        self.split_inputs = split_inputs
        self.name = name

    def _cell_params(self):
        params = super()._cell_params()
        params["gate_activation"] = self.gate_activation
        return params
