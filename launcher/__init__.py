"""The worker launcher: ``python -m launcher --workers N script.py``.

It spawns and supervises worker processes and never imports the engine (only
the standard library). Files: ``cli`` (options), ``front`` (the two launcher
processes), ``job`` (attempts, restarts, the nodes' protocol), ``rendezvous``
(how the nodes' launchers meet), ``workers`` (one attempt's local workers),
``worker_env`` (the environment contract), ``output`` ([rank N] lines),
``process_tree`` (leaving no process behind), ``summary`` (the failure
report), ``_bootstrap`` (runs inside each worker).
"""
