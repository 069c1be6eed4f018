"""``distnn.xpu``: the queries programs make of ``torch.xpu``, answered as torch 2.13
answers them on a machine without an XPU (distnn has no XPU backend)."""

import distnn
from op_check import requires_torch, torch


def test_no_xpu():
    assert distnn.xpu.is_available() is False
    assert distnn.xpu.device_count() == 0


@requires_torch
def test_answers_as_torch_without_an_xpu():
    assert distnn.xpu.is_available() is torch.xpu.is_available() is False
    assert distnn.xpu.device_count() == torch.xpu.device_count() == 0
