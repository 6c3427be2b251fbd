"""From a fitted estimator (or a configured Model) to an ONNX graph: the inputs, the
network (``_layers``, ``_recurrent``) and the outputs its task asks for.

Outputs are named as scikit-learn's converters name them: a classifier gives
``"label"`` and ``"probabilities"``, a regressor ``"variable"``, a bare
:class:`~neonlearn.models.Model` its network output ``"output"``.
"""
import numpy as np
from onnx import TensorProto, helper
from onnx.defs import onnx_opset_version
from scipy import sparse
from sklearn.utils.validation import check_is_fitted

from .._estimators import NeonClassifier, NeonRegressor, NeonSequenceModel
from ..models import Model
from . import _recurrent  # noqa: F401  (registers the recurrent converters)
from ._graph import DEFAULT_OPSET, MIN_OPSET, Graph, NotExportableError
from ._layers import convert

__all__ = ["to_onnx", "network_output", "estimator_outputs", "label_classes",
           "check_opset", "is_regressor"]


def check_opset(target_opset):
    """The opset to write for (an int, or skl2onnx's ``{domain: version}``)."""
    if target_opset is None:
        return DEFAULT_OPSET
    if isinstance(target_opset, dict):  # skl2onnx's form: {domain: version}
        target_opset = target_opset.get("", DEFAULT_OPSET)
    newest = onnx_opset_version()
    if (not isinstance(target_opset, (int, np.integer)) or isinstance(target_opset, bool)
            or not MIN_OPSET <= target_opset <= newest):
        raise ValueError("target_opset must be an int in [%d, %d] (the installed onnx's "
                         "newest), got %r" % (MIN_OPSET, newest, target_opset))
    return int(target_opset)


def _model_of(estimator):
    if isinstance(estimator, Model):
        if not hasattr(estimator, "out_shape"):
            raise ValueError("The Model is not configured: call model.configure(shape) "
                             "(or fit it) before exporting")
        return _single_input(estimator, "The Model")
    if not isinstance(estimator, (NeonClassifier, NeonRegressor, NeonSequenceModel)):
        raise ValueError("to_onnx exports neonlearn's estimators (NeonClassifier, "
                         "NeonRegressor, NeonSequenceModel) and Models, got %r; export "
                         "a Pipeline with skl2onnx.to_onnx (import neonlearn.onnx "
                         "first)" % type(estimator).__name__)
    check_is_fitted(estimator, "model_")
    return _single_input(estimator.model_, type(estimator).__name__)


def _single_input(model, what):
    if isinstance(model.in_shape, dict):
        raise NotExportableError(
            "%s takes named inputs (MergeMultistream): networks with several inputs "
            "are not exported to ONNX yet" % what)
    return model


def network_output(model, graph, x):
    """Write the network of ``model`` into ``graph`` on the input ``x``."""
    return convert(model.layers, graph, x)


def label_classes(estimator):
    """``classes_`` as an int64 or a string array (the label tensor's type)."""
    classes = np.asarray(estimator.classes_)
    # float labels are integral (scikit-learn refuses continuous targets), as
    # skl2onnx's classifiers they become int64
    if classes.dtype.kind in "iubf":
        return classes.astype(np.int64)
    return np.array([str(c) for c in classes], dtype=object)


def is_regressor(estimator):
    return isinstance(estimator, NeonRegressor) or (
        isinstance(estimator, NeonSequenceModel) and estimator.task == "regression")


def estimator_outputs(estimator, graph, y, label="label", probabilities="probabilities",
                      variable="variable"):
    """Nodes from the network output ``y`` to the estimator's outputs; returns the
    list of ``(name, elem_type, shape)`` of the outputs written."""
    if is_regressor(estimator):
        graph.nodes.append(helper.make_node("Identity", [y], [variable],
                                            name=graph.name("node_variable")))
        return [(variable, TensorProto.FLOAT, [None, estimator.task_.n_outputs])]
    task = estimator.task_
    tagging = isinstance(estimator, NeonSequenceModel) and estimator.task == "tagging"
    if tagging:  # padded steps are zero (the network's StepMask)
        proba = y
    elif task.binary_units == 1:  # one logistic unit: the probability of classes_[1]
        proba = graph.op("Concat", [graph.op("Sub", [graph.const(1.0, "one"), y]), y],
                         axis=1)
    elif task.multilabel:
        proba = y
    else:  # renormalized, as predict_proba does
        total = graph.op("ReduceSum", [y, graph.ints([1], "axis")], keepdims=1)
        proba = graph.op("Div", [y, total])
    graph.nodes.append(helper.make_node("Identity", [proba], [probabilities],
                                        name=graph.name("node_probabilities")))
    classes = label_classes(estimator)
    n_classes = len(classes)
    if task.multilabel:
        graph.nodes.append(helper.make_node(
            "Cast", [graph.op("Greater", [proba, graph.const(0.5, "half")])], [label],
            name=graph.name("node_label"), to=TensorProto.INT64))
        return [(label, TensorProto.INT64, [None, n_classes]),
                (probabilities, TensorProto.FLOAT, [None, n_classes])]
    index = graph.op("ArgMax", [proba], axis=-1, keepdims=0)
    table = graph.const(classes, "classes", dtype=None)
    graph.nodes.append(helper.make_node("Gather", [table, index], [label], axis=0,
                                        name=graph.name("node_label")))
    label_type = TensorProto.STRING if classes.dtype == object else TensorProto.INT64
    if tagging:
        return [(label, label_type, [None, None]),
                (probabilities, TensorProto.FLOAT, [None, None, n_classes])]
    return [(label, label_type, [None]),
            (probabilities, TensorProto.FLOAT, [None, n_classes])]


def _sequence_inputs(estimator, model, graph):
    """Inputs of a sequence model: padded values and the lengths."""
    if estimator._uses_ids():
        x_info = helper.make_tensor_value_info("X", TensorProto.INT64, [None, None])
    else:
        F = model.in_shape[-1] - 1  # without the mask channel
        x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, None, F])
    lengths = helper.make_tensor_value_info("lengths", TensorProto.INT64, [None])
    graph.lengths, graph.time_source = "lengths", "X"
    return [x_info, lengths], "X"


def _plain_inputs(model, X_sample, graph):
    """Input ``X`` of a dense, image or fixed-length model: flat ``(N, n_features)``
    when ``X_sample`` is 2-D and the network takes another shape (Pipelines), else
    the network's sample shape."""
    shape = tuple(model.in_shape)
    if sparse.issparse(X_sample):  # the graph takes dense rows: one shows the shape
        X_sample = X_sample[:1].toarray()
    integer = (bool(getattr(model, "integer_inputs_", False))
               and np.asarray(X_sample).dtype.kind in "iu")
    elem = TensorProto.INT64 if integer else TensorProto.FLOAT
    sample = np.asarray(X_sample) if X_sample is not None else None
    if sample is not None and sample.ndim == 2 and len(shape) > 1:
        if sample.shape[1] != int(np.prod(shape)):
            raise ValueError("X_sample has %d features; the network takes samples of "
                             "shape %r" % (sample.shape[1], shape))
        info = helper.make_tensor_value_info("X", elem, [None, sample.shape[1]])
        x = graph.op("Reshape", ["X", graph.ints((-1,) + shape)], hint="X_samples")
    else:
        if sample is not None and sample.ndim >= 2 and tuple(sample.shape[1:]) != shape:
            raise ValueError("X_sample has samples of shape %r; the network takes %r"
                             % (tuple(sample.shape[1:]), shape))
        info = helper.make_tensor_value_info("X", elem, [None] + list(shape))
        x = "X"
    graph.time_source = x
    return [info], x


def to_onnx(estimator, X_sample=None, target_opset=None):
    """Export a fitted neonlearn estimator (or a configured Model) to ONNX.

    Parameters
    ----------
    estimator : NeonClassifier, NeonRegressor, NeonSequenceModel or Model
        Fitted.
    X_sample : array-like or None
        A few rows of ``X`` as ``predict`` takes them.  For a dense or image model a
        2-D ``X_sample`` makes the graph take flat rows ``(N, n_features)`` (what a
        Pipeline passes), reshaped inside to the network's sample shape; otherwise
        the graph takes ``(N, *sample_shape)``.  Integer samples make the input
        int64 for a network that starts with a LookupTable.  A sequence model
        always takes padded ``X (N, T, F)`` (int64 ids ``(N, T)``) and ``lengths``.
        A model fitted on sparse ``X`` (scipy.sparse) exports like any other: the
        graph takes dense ``(N, n_features)`` rows (ONNX's standard operators have
        no sparse inputs), and a sparse ``X_sample`` is read for its shape only.
    target_opset : int or None
        ONNX opset (``>= 14``); default 18.

    Returns
    -------
    onnx.ModelProto
        Inputs ``"X"`` (float32, or int64 ids) and, for NeonSequenceModel,
        ``"lengths"`` (int64 ``(N,)``).  Outputs: classifiers ``"label"`` (int64,
        or strings for string classes) and ``"probabilities"`` (float32 ``(N,
        n_classes)``; tagging ``(N, T)`` labels and ``(N, T, n_classes)``
        probabilities, zero on padded steps); regressors ``"variable"`` (float32
        ``(N, n_targets)``); a Model ``"output"``.  The batch size, and the
        sequence length, are dynamic.

    Raises
    ------
    NotExportableError
        A layer or transform that standard ONNX cannot express (a user's layer, a
        GRU with non-logistic gates); the message names it.
    """
    opset = check_opset(target_opset)
    model = _model_of(estimator)
    graph = Graph(opset=opset)
    if isinstance(estimator, NeonSequenceModel):
        inputs, x = _sequence_inputs(estimator, model, graph)
    else:
        inputs, x = _plain_inputs(model, X_sample, graph)
    y = network_output(model, graph, x)
    if isinstance(estimator, Model):
        graph.nodes.append(helper.make_node("Identity", [y], ["output"],
                                            name=graph.name("node_output")))
        outs = [("output", TensorProto.FLOAT, [None] + list(model.out_shape))]
    else:
        outs = estimator_outputs(estimator, graph, y)
    outputs = [helper.make_tensor_value_info(n, t, s) for n, t, s in outs]
    return graph.make_model(inputs, outputs, name=type(estimator).__name__)
