"""skl2onnx registration: neonlearn's estimators inside scikit-learn pipelines.

``import neonlearn.onnx`` registers NeonClassifier, NeonRegressor and
NeonSequenceModel with ``skl2onnx.update_registered_converter`` (when skl2onnx is
installed), so ``skl2onnx.to_onnx(make_pipeline(StandardScaler(), NeonClassifier(...))
.fit(X, y), X[:1])`` exports the whole pipeline.  The step receives the previous
step's 2-D output ``(N, n_features)``: it is reshaped to the network's sample shape
(``input_shape``); a sequence model in a pipeline takes flat full-length sequences
``(N, T * F)`` (no ``lengths``).

Classifiers declare skl2onnx's ``zipmap`` option: by default (as for scikit-learn's
classifiers) the probabilities become a ZipMap (a list of ``{class: probability}``
dicts, output ``"output_probability"``, labels ``"output_label"``);
``options={id(clf): {"zipmap": False}}`` keeps the plain 2-D tensor.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .._estimators import NeonClassifier, NeonRegressor, NeonSequenceModel
from ._export import (check_opset, estimator_outputs, is_regressor, label_classes,
                      network_output)
from ._graph import Graph

__all__ = ["register_skl2onnx"]

_ALIASES = {NeonClassifier: "NeonlearnNeonClassifier",
            NeonRegressor: "NeonlearnNeonRegressor",
            NeonSequenceModel: "NeonlearnNeonSequenceModel"}
# skl2onnx's ZipMap reads nocl and output_class_labels too; only their defaults
# (class labels, not indices; no extra label output) are supported
_CLASSIFIER_OPTIONS = {"zipmap": [True, False, "columns"], "nocl": [False],
                       "output_class_labels": [False]}


def _shape_calculator(operator):
    from skl2onnx.common.data_types import (FloatTensorType, Int64TensorType,
                                            StringTensorType)

    est = operator.raw_operator
    N = operator.inputs[0].get_first_dimension()
    if is_regressor(est):
        operator.outputs[0].type = FloatTensorType([N, est.task_.n_outputs])
        return
    if getattr(est, "task", None) == "tagging" or est.task_.multilabel:
        raise ValueError("%s: skl2onnx pipelines take one label per sample; export "
                         "tagging and multilabel models with neonlearn.onnx.to_onnx"
                         % type(est).__name__)
    classes = label_classes(est)
    label = StringTensorType if classes.dtype == object else Int64TensorType
    operator.outputs[0].type = label([N])
    operator.outputs[1].type = FloatTensorType([N, len(classes)])


def _network_input(est, graph, x):
    """The pipeline's 2-D float input in the network's sample shape."""
    model = est.model_
    if isinstance(est, NeonSequenceModel):
        if est._uses_ids():
            return x  # (N, T) ids; the LookupTable casts them
        F = model.in_shape[-1] - 1  # without the mask channel
        return graph.op("Reshape", [x, graph.ints([0, -1, F])], hint="sequences")
    shape = tuple(model.in_shape)
    if len(shape) == 1:
        return x
    return graph.op("Reshape", [x, graph.ints((-1,) + shape)], hint="samples")


def _copy_into(graph, container):
    for tensor in graph.initializers:
        if tensor.data_type == TensorProto.STRING:
            values = list(numpy_helper.to_array(tensor).ravel())
            container.add_initializer(tensor.name, TensorProto.STRING,
                                      list(tensor.dims), values)
        else:
            container.add_initializer(tensor.name, tensor.data_type, list(tensor.dims),
                                      tensor)
    for node in graph.nodes:
        attrs = {}
        for attr in node.attribute:
            value = helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode("utf-8")
            elif isinstance(value, list) and value and isinstance(value[0], bytes):
                value = [v.decode("utf-8") for v in value]
            attrs[attr.name] = value
        container.add_node(node.op_type, list(node.input), list(node.output),
                           name=node.name, **attrs)


def _converter(scope, operator, container):
    est = operator.raw_operator
    graph = Graph(prefix=scope.get_unique_operator_name("Neon") + "_",
                  opset=check_opset(container.target_opset))
    x = operator.inputs[0].full_name
    if operator.inputs[0].type.to_onnx_type().tensor_type.elem_type != TensorProto.FLOAT:
        x = graph.op("Cast", [x], hint="X_float", to=TensorProto.FLOAT)
    x = _network_input(est, graph, x)
    graph.time_source = x
    y = network_output(est.model_, graph, x)
    names = [v.full_name for v in operator.outputs]
    if is_regressor(est):
        estimator_outputs(est, graph, y, variable=names[0])
    else:
        estimator_outputs(est, graph, y, label=names[0], probabilities=names[1])
    _copy_into(graph, container)


def _sequence_parser(scope, model, inputs, custom_parsers=None):
    """A NeonSequenceModel is a classifier or a regressor by its ``task``."""
    from skl2onnx._parse import _apply_zipmap, _get_sklearn_operator_name
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType

    operator = scope.declare_local_operator(_get_sklearn_operator_name(type(model)),
                                            model)
    operator.inputs = inputs
    if is_regressor(model):
        operator.outputs.append(scope.declare_local_variable("variable",
                                                             FloatTensorType()))
        return operator.outputs
    label = scope.declare_local_variable("label", Int64TensorType())
    proba = scope.declare_local_variable("probabilities", FloatTensorType())
    operator.outputs.extend([label, proba])
    options = scope.get_options(model, dict(zipmap=True))
    if isinstance(options["zipmap"], bool) and not options["zipmap"]:
        return operator.outputs
    return _apply_zipmap(options["zipmap"], scope, model, inputs[0].type,
                         operator.outputs)


def register_skl2onnx():
    """Register the estimators with skl2onnx; False when it is not installed."""
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx._parse import _parse_sklearn_classifier
    except ImportError:
        return False
    update_registered_converter(NeonClassifier, _ALIASES[NeonClassifier],
                                _shape_calculator, _converter,
                                parser=_parse_sklearn_classifier,
                                options=_CLASSIFIER_OPTIONS)
    update_registered_converter(NeonRegressor, _ALIASES[NeonRegressor],
                                _shape_calculator, _converter)
    update_registered_converter(NeonSequenceModel, _ALIASES[NeonSequenceModel],
                                _shape_calculator, _converter, parser=_sequence_parser,
                                options=_CLASSIFIER_OPTIONS)
    return True
