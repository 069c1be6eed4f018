"""One callable of ``make_graphed_callables``: its forward and backward captured into
two CUDA graphs, replayed by an autograd Function whose inputs are the call's tensors
and the module's parameters (so their ``.grad`` accumulate as after any backward)."""

from .. import autograd
from ..autograd.function import Function
from ..tensor import Tensor
from .graphs import CUDAGraph, graph


def _signature(t):
    return tuple(t.shape), t.dtype, t.device, t.requires_grad


def _describe(sig):
    shape, dtype, device, requires_grad = sig
    return f"shape {shape}, dtype {dtype}, device {device}, requires_grad={requires_grad}"


def _outputs_tuple(out, where):
    outs = out if isinstance(out, tuple) else (out,)
    if not all(isinstance(o, Tensor) for o in outs):
        raise TypeError(f"make_graphed_callables: {where} must return a Tensor or a tuple of Tensors")
    return outs


def graph_callable(fn, sample_args, num_warmup_iters, allow_unused_input, pool, side_stream):
    from ..nn import Module
    for i, a in enumerate(sample_args):
        if not isinstance(a, Tensor) or a.device.type != "cuda":
            raise TypeError(f"make_graphed_callables: sample arg {i} must be a CUDA Tensor, got "
                            f"{type(a).__name__}" + (f" on {a.device}" if isinstance(a, Tensor) else ""))
    module = fn if isinstance(fn, Module) else None
    params = tuple(p for p in module.parameters() if p.requires_grad) if module is not None else ()
    forward = module.forward if module is not None else fn
    signature = tuple(_signature(a) for a in sample_args)
    wrt = tuple(a for a in sample_args if a.requires_grad) + params

    def backward_of(outs, grad_outputs):
        pairs = [(o, g) for o, g in zip(outs, grad_outputs) if o.requires_grad]
        if not pairs or not wrt:
            return ()
        return autograd.grad([o for o, _ in pairs], wrt, grad_outputs=[g for _, g in pairs],
                             allow_unused=allow_unused_input)

    with side_stream():  # kernels compile and buffers appear outside the capture
        for _ in range(num_warmup_iters):
            outs = _outputs_tuple(forward(*sample_args), "the callable")
            backward_of(outs, [_zeros_like(o) for o in outs])
    forward_graph, backward_graph = CUDAGraph(), CUDAGraph()
    with graph(forward_graph, pool=pool):
        static_outputs = _outputs_tuple(forward(*sample_args), "the callable")
    static_grad_outputs = tuple(_zeros_like(o) if o.requires_grad else None for o in static_outputs)
    with graph(backward_graph, pool=forward_graph.pool()):
        static_grads = backward_of(static_outputs, static_grad_outputs)
    grad_slots = [i for i, a in enumerate(sample_args) if a.requires_grad] + \
        [len(sample_args) + j for j in range(len(params))]

    class Graphed(Function):
        @staticmethod
        def forward(ctx, *inputs):
            for static, given in zip(sample_args, inputs):
                if given is not static:
                    static.copy_(given)
            forward_graph.replay()
            return tuple(o.detach() for o in static_outputs)  # new tensors over the graph's buffers

        @staticmethod
        def backward(ctx, *grads):
            for static, g in zip(static_grad_outputs, grads):
                if static is not None:
                    static.copy_(g) if g is not None else static.zero_()
            backward_graph.replay()
            result = [None] * (len(sample_args) + len(params))
            for slot, g in zip(grad_slots, static_grads):  # copies: .grad may keep what it is given,
                result[slot] = None if g is None else g.detach().clone()  # and the next replay rewrites these
            return tuple(result)

    def graphed(*args):
        if len(args) != len(signature):
            raise TypeError(f"graphed callable was captured with {len(signature)} tensor args, got {len(args)}")
        for i, (a, expected) in enumerate(zip(args, signature)):
            got = _signature(a) if isinstance(a, Tensor) else None
            if got != expected:
                raise RuntimeError(f"graphed callable: arg {i} was captured with {_describe(expected)}; got "
                                   + (_describe(got) if got else type(a).__name__)
                                   + " (a graph replays fixed shapes and dtypes: capture another for these)")
        outs = Graphed.apply(*args, *params)
        return outs[0] if len(static_outputs) == 1 else outs

    if module is None:
        return graphed
    captured_training = module.training

    def module_forward(*args):
        return graphed(*args) if module.training == captured_training else forward(*args)
    module.forward = module_forward
    return module


def _zeros_like(t):
    from ..creation import zeros_like
    return zeros_like(t.detach())
