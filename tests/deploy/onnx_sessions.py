"""The onnxruntime session the ONNX tests run exported graphs in."""
import onnx
import onnxruntime as ort


def ort_session(model_proto):
    """A one-thread CPU session, after onnx's checker and a strict shape inference
    (declared and inferred shapes must agree)."""
    onnx.checker.check_model(model_proto)
    onnx.shape_inference.infer_shapes(model_proto, check_type=True, strict_mode=True,
                                      data_prop=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model_proto.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])
