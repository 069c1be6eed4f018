"""The convolution cases that tests/ops/test_conv.py runs on distnn's own paths and
tests/ops/test_conv_onednn.py through oneDNN."""

from op_check import make_input


def conv_inputs(x_shape, w_shape, bias_size):
    arrays = [make_input(x_shape, seed=1), make_input(w_shape, seed=2)]
    if bias_size:
        arrays.append(make_input((bias_size,), seed=3))
    return arrays


def conv_call(name, kwargs):
    def fn(lib, x, w, b=None):
        return getattr(lib.nn.functional, name)(x, w, b, **kwargs)
    return fn


# (x shape, weight shape, bias?, kwargs): tiny, because gradcheck is O(numel^2)
CONV2D_CASES = [
    ((2, 2, 5, 5), (3, 2, 3, 3), True, {}),
    ((2, 2, 5, 6), (3, 2, 3, 3), False, {"stride": 2}),
    ((2, 2, 5, 5), (3, 2, 3, 2), True, {"padding": 1}),
    ((1, 2, 5, 6), (3, 2, 2, 3), True, {"stride": (2, 1), "padding": (0, 2)}),
    ((2, 2, 6, 6), (2, 2, 2, 2), True, {"dilation": 2}),
    ((1, 2, 7, 6), (3, 2, 3, 2), False, {"dilation": (1, 2), "padding": 2, "stride": (2, 3)}),
    ((2, 2, 5, 5), (3, 2, 3, 3), True, {"padding": "same"}),
    ((2, 2, 5, 6), (3, 2, 2, 4), True, {"padding": "same"}),  # even kernels: asymmetric padding
    ((1, 2, 6, 5), (2, 2, 2, 3), False, {"padding": "same", "dilation": (3, 1)}),
    ((2, 2, 5, 5), (3, 2, 3, 3), True, {"padding": "valid"}),
    ((2, 4, 5, 5), (6, 2, 3, 3), True, {"groups": 2}),
    ((2, 3, 5, 5), (3, 1, 3, 3), True, {"groups": 3, "padding": 1}),  # depthwise
    ((2, 2, 4, 4), (6, 1, 2, 2), False, {"groups": 2, "stride": 2}),  # channel multiplier
    ((2, 3, 4, 4), (2, 3, 1, 1), True, {}),  # 1x1
    ((1, 1, 3, 3), (1, 1, 3, 3), True, {}),  # kernel covers the whole input
    # one input channel (the MNIST conv1)
    ((2, 1, 6, 7), (4, 1, 3, 3), True, {}),
    ((2, 1, 7, 6), (3, 1, 3, 2), True, {"stride": (2, 3), "padding": (1, 2)}),
    ((1, 1, 7, 7), (3, 1, 2, 3), False, {"dilation": (2, 1), "padding": "same"}),
    ((2, 1, 5, 6), (2, 1, 3, 3), True, {"dilation": 2, "padding": 1, "stride": 2}),
    # taps that only read padding, or input rows no window reads, are cropped away
    ((2, 3, 1, 1), (4, 3, 3, 3), True, {"padding": 1}),  # ResNet's last stage at 32x32
    ((2, 3, 2, 2), (4, 3, 3, 3), True, {"padding": 1, "stride": 2}),  # its stride-2 entry: a 2x2 kernel
    ((2, 2, 2, 1), (3, 2, 5, 3), False, {"padding": (3, 1)}),
    ((1, 2, 6, 7), (2, 2, 1, 1), True, {"stride": 2}),  # the last row and column are never read
    ((2, 2, 1, 2), (3, 2, 3, 3), True, {"padding": (2, 1), "dilation": (2, 1)}),
    ((1, 2, 3, 1), (2, 2, 3, 3), False, {"padding": 2, "stride": 2}),
    ((2, 4, 1, 1), (4, 2, 3, 3), True, {"padding": 1, "groups": 2}),
    # depthwise, as a banded GEMM per channel
    ((2, 3, 6, 5), (3, 1, 3, 2), False, {"groups": 3, "stride": (2, 1), "dilation": (1, 2), "padding": (1, 2)}),
    ((1, 2, 5, 6), (6, 1, 3, 3), True, {"groups": 2, "stride": (1, 2), "padding": 1}),  # multiplier 3
    ((2, 2, 7, 4), (2, 1, 2, 3), True, {"groups": 2, "dilation": (3, 1), "padding": "same"}),
]


# weight is (C_in, C_out / groups, KH, KW)
CONV_TRANSPOSE2D_CASES = [
    ((2, 2, 3, 3), (2, 3, 3, 3), True, {}),
    ((2, 2, 3, 4), (2, 2, 3, 2), True, {"stride": 2}),
    ((1, 2, 3, 3), (2, 2, 3, 3), False, {"stride": 2, "padding": 1, "output_padding": 1}),
    ((2, 2, 3, 3), (2, 1, 2, 3), True, {"stride": (1, 2), "padding": (1, 0), "dilation": 2}),
    ((2, 4, 3, 3), (4, 1, 3, 3), True, {"groups": 2, "stride": 2}),
    ((1, 2, 2, 3), (2, 3, 2, 2), True, {"stride": 3, "output_padding": (2, 1)}),
    ((2, 2, 3, 3), (2, 2, 2, 2), False, {"dilation": 3, "output_padding": 1, "stride": 2}),
    ((2, 3, 3, 4), (3, 1, 3, 3), True, {"stride": 2, "padding": 1}),  # one output channel
]


# (x shape, weight shape, kwargs), with a bias
CONV_TRANSPOSE1D_CASES = [
    ((2, 2, 4), (2, 3, 3), {}),
    ((2, 2, 4), (2, 2, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((1, 4, 3), (4, 1, 2), {"groups": 4, "dilation": 2}),
]


CONV1D_CASES = [
    ((2, 2, 7), (3, 2, 3), True, {}),
    ((2, 2, 8), (3, 2, 2), False, {"stride": 2, "padding": 1}),
    ((2, 2, 9), (3, 2, 3), True, {"dilation": 2, "padding": "same"}),
    ((1, 2, 7), (3, 2, 4), True, {"padding": "same"}),
    ((2, 4, 6), (4, 1, 3), True, {"groups": 4}),
]


# float32 shapes big enough for the fast paths, against PyTorch
MODERATE_CONV2D_CASES = [
    ((8, 1, 28, 28), (10, 1, 5, 5), {}),  # the MNIST ConvNet's layers
    ((8, 10, 12, 12), (20, 10, 5, 5), {}),
    ((4, 8, 16, 15), (16, 8, 3, 3), {"stride": 2, "padding": 1}),
    ((4, 8, 16, 16), (8, 1, 3, 3), {"groups": 8, "padding": "same", "dilation": 2}),
    ((3, 6, 9, 10), (12, 3, 4, 4), {"groups": 2, "padding": "same"}),
    ((4, 16, 20, 20), (16, 1, 3, 3), {"groups": 16, "padding": 1}),  # depthwise too wide for the band
    ((4, 16, 12, 12), (32, 1, 5, 5), {"groups": 16, "padding": 2, "stride": 2}),
    ((4, 16, 8, 8), (24, 16, 1, 1), {}),  # pointwise: a GEMM per sample
    ((4, 16, 16, 15), (8, 16, 1, 1), {"stride": 2}),
    ((4, 16, 15, 16), (8, 16, 1, 1), {"stride": (1, 3)}),
    # stride 1 on maps wide enough for the flat grid (a small ResNet's blocks)
    ((4, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}),
    ((3, 6, 17, 20), (8, 6, 5, 3), {"padding": (2, 0), "dilation": (1, 2)}),
    ((2, 8, 14, 16), (8, 4, 4, 4), {"padding": "same", "groups": 2}),
]
