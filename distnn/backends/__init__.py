"""``distnn.backends``: PyTorch's ``torch.backends`` switches that training scripts
set or query (``cudnn.benchmark``, ``cuda.matmul.allow_tf32``, ``mps.is_available()``,
``mkldnn.enabled``), each saying in its module what it means for distnn."""

from . import cuda, cudnn, mkldnn, mps

__all__ = ["cuda", "cudnn", "mkldnn", "mps"]
