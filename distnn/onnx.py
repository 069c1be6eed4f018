"""``distnn.onnx``: present so that ``import torch.onnx`` works; distnn cannot export
ONNX (it records no traceable graph of a model's forward), so ``export`` raises."""

__all__ = ["OnnxExporterError", "export", "is_in_onnx_export"]


class OnnxExporterError(RuntimeError):
    """Raised when an export fails, as in PyTorch."""


class ExportNotSupportedError(OnnxExporterError, NotImplementedError):
    """distnn has no ONNX exporter: caught by ``except OnnxExporterError`` and by
    ``except NotImplementedError`` alike."""


def export(model, args=(), f=None, **kwargs):
    """Always raises: ONNX export is not supported by distnn."""
    raise ExportNotSupportedError(
        "ONNX export is not supported by distnn: it has no tracer to record "
        f"{type(model).__name__}'s forward as a graph (torch.onnx.export needs PyTorch itself)")


def is_in_onnx_export():
    """False: distnn never runs a model under an ONNX export."""
    return False
