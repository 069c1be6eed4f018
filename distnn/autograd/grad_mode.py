"""Whether operations record a graph: ``no_grad``, ``enable_grad``, ``set_grad_enabled``.

Like PyTorch the flag is per thread, and each works as a context manager and
as a decorator.
"""

import functools
import threading


class _State(threading.local):
    enabled = True


_state = _State()


def is_grad_enabled():
    return _state.enabled


class _GradModeContext:
    """Base: subclasses say which mode they switch to in ``_mode``."""

    _mode = True

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _switch_to(self._mode):
                return fn(*args, **kwargs)
        return wrapper


def _switch_to(mode):
    """A fresh context per call, so a decorated function is re-entrant."""
    ctx = _GradModeContext()
    ctx._mode = mode
    return ctx


class no_grad(_GradModeContext):
    _mode = False


class enable_grad(_GradModeContext):
    _mode = True


class set_grad_enabled(_GradModeContext):
    """Sets the mode at construction (like PyTorch) and restores it on exit."""

    def __init__(self, mode):
        self._prev = _state.enabled
        self._mode = bool(mode)
        _state.enabled = self._mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False


class inference_mode(no_grad):
    """Accepted for compatibility; behaves as ``no_grad``."""

    def __init__(self, mode=True):
        self._mode = not mode
