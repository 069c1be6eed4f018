"""A test program that forks once ``before_fork`` has run (oneDNN's OpenMP team
started, say) and exits 0 only if the child's check passed: 3 if it failed, 4 if
the child hung for a minute (then killed). Run it with ``subprocess.run``."""

import textwrap


def fork_child_script(before_fork, in_child):
    """``in_child`` must end the child with ``os._exit(0)`` on success (3 otherwise)."""
    return "\n".join([
        "import os, signal, sys, time",
        "import numpy as np",
        "import distnn",
        textwrap.dedent(before_fork),
        "pid = os.fork()",
        "if pid == 0:",
        textwrap.indent(textwrap.dedent(in_child), "    "),
        "deadline = time.monotonic() + 60",
        "while time.monotonic() < deadline:",
        "    done, status = os.waitpid(pid, os.WNOHANG)",
        "    if done:",
        "        sys.exit(os.waitstatus_to_exitcode(status))",
        "    time.sleep(0.05)",
        "os.kill(pid, signal.SIGKILL)  # hung",
        "os.waitpid(pid, 0)",
        "sys.exit(4)",
    ])
