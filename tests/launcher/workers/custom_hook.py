"""Installs its own sys.excepthook, then fails: the hook must still run and
the launcher must still get the traceback."""

import sys


def hook(exc_type, exc, tb):
    print(f"custom hook saw {exc_type.__name__}: {exc}", file=sys.stderr)


sys.excepthook = hook


def load_batch():
    raise KeyError("missing batch 7")


load_batch()
