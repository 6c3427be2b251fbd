"""Export fitted neonlearn estimators to ONNX.

``to_onnx(estimator, X_sample)`` returns an ``onnx.ModelProto`` that onnxruntime (or
any ONNX runtime) runs without neonlearn.  Importing this module also registers
neonlearn's estimators with skl2onnx (when it is installed), so that
``skl2onnx.to_onnx(pipeline, X[:1])`` exports a Pipeline that ends with one.

Modules: ``_graph`` (the graph builder and :class:`NotExportableError`), ``_layers``
(one converter per layer class), ``_recurrent`` (the recurrent layers and the
sequence summaries), ``_export`` (inputs and outputs of each estimator kind),
``_skl2onnx`` (the pipeline converter).  See ``doc/user_guide/onnx.rst``.

This package sits above the estimators: nothing else in neonlearn imports it.
"""
try:
    import onnx  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("neonlearn.onnx needs the onnx package: pip install "
                      "'neonlearn[onnx]' (onnx, onnxruntime, skl2onnx)") from exc

from ._export import to_onnx  # noqa: E402
from ._graph import NotExportableError  # noqa: E402
from ._skl2onnx import register_skl2onnx  # noqa: E402

__all__ = ["to_onnx", "NotExportableError", "register_skl2onnx"]

register_skl2onnx()
