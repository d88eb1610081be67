"""The references the benchmark times the fast path against: a plain ONNX export, OpenVINO, ``torch.compile``.

Each is a callable on two ``(H, W)`` float32 arrays that returns the fused
image, built once before the timing (:func:`napari_lightfusion.research.bench.run_case`).
"""

from __future__ import annotations

from pathlib import Path


def plain_onnx_session(model, threads: int):
    """``torch.onnx.export`` of ``model(a, b)`` as it is, in an ONNX Runtime session with default options.

    The reference the fast path is measured against: what anyone would get
    by exporting the network without rewriting it (``threads`` intra-op
    threads; everything else ONNX Runtime's defaults).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(_plain_onnx(model), options, providers=["CPUExecutionProvider"])
    return lambda a, b: session.run(None, {"a": a[None, None], "b": b[None, None]})[0]


def _plain_onnx(model) -> bytes:
    """``torch.onnx.export`` of ``model(a, b)`` as it is, with dynamic batch, height and width."""
    import io
    import warnings

    import torch

    sample = torch.rand(1, 1, 32, 32)
    axes = {name: {0: "batch", 2: "height", 3: "width"} for name in ("a", "b", "fused")}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample, sample),
            buffer,
            input_names=["a", "b"],
            output_names=["fused"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def openvino_session(model, threads: int):
    """The plain ONNX export (:func:`plain_onnx_session`'s) compiled by OpenVINO for the CPU; None without it.

    In float32 (``INFERENCE_PRECISION_HINT``): on a CPU with AVX-512 BF16
    OpenVINO otherwise runs the network in bfloat16, which is faster but
    off by up to 3e-3 (the fast path agrees with PyTorch within 1e-6), so
    its time would not be a time for the same result.
    """
    try:
        import openvino as ov
    except ImportError:
        return None
    import tempfile

    data = _plain_onnx(model)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plain.onnx"
        path.write_bytes(data)
        compiled = ov.Core().compile_model(
            str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        )
    request = compiled.create_infer_request()
    return lambda a, b: request.infer({"a": a[None, None], "b": b[None, None]})[compiled.output(0)]


def compiled_forward(model, device):
    """``torch.compile`` (inductor) of ``model`` as a callable on two ``(H, W)`` float32 arrays."""
    import torch

    compiled = torch.compile(model)

    def run(a, b):
        with torch.inference_mode():
            out = compiled(torch.from_numpy(a)[None, None].to(device), torch.from_numpy(b)[None, None].to(device))
            return out.cpu().numpy()

    return run
