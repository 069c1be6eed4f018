"""The worker launcher: ``python -m launcher --workers N script.py``.

It spawns and supervises worker processes and never imports the engine (only
the standard library). Files: ``cli`` (options), ``front`` (the launcher's
processes: front, supervisor and watchdog), ``workspace`` (its private
folder), ``cgroup`` (the job's cgroup, where cgroups work), ``job``
(attempts, restarts, the nodes' protocol), ``rendezvous`` (how the nodes'
launchers meet), ``workers`` (one attempt's local workers), ``worker_env``
(the environment contract), ``output`` ([rank N] lines), ``process_tree``
(leaving no process behind), ``summary`` (the failure report),
``_bootstrap`` (runs inside each worker).
"""
