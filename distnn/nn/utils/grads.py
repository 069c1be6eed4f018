"""``zero_grads``: what ``Module.zero_grad`` and ``Optimizer.zero_grad`` both do."""


def zero_grads(params, set_to_none=True):
    """Drop every parameter's gradient (``set_to_none``) or fill it with zeros in place."""
    for p in params:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            if p.grad.grad_fn is not None:
                p.grad.detach_()
            else:
                p.grad.requires_grad_(False)
            p.grad.zero_()
