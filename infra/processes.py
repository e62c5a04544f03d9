"""Whether a recorded server process is still alive (the local Redis Cluster and object store)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) is reaped if it is our child and counts
    as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            zombie = stat.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
    if zombie:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return not zombie
