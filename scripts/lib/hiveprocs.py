"""Processes under /proc, for the test and benchmark drivers that run
hived and its workers as children (tests/chaos/chaos.py, bench/soak.py)."""

import ctypes
import os

PR_SET_CHILD_SUBREAPER = 36


def proc_stat(pid):
    """(state, ppid, comm) of pid, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), comm


def processes():
    """Every process: {pid: (state, ppid, comm)}."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st is not None:
                table[int(d)] = st
    return table


def rss_kb(pid):
    """VmRSS of pid in kB, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def set_subreaper():
    """Processes orphaned below us (workers of a SIGKILLed hived, handlers
    of a killed worker) become our children instead of init's, so that we
    reap them."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except OSError:
        pass


def reap_orphans(names):
    """waitpid the orphans named in names that were reparented to us (only
    those: subprocess owns the status of the children it started)."""
    me = os.getpid()
    for pid, (state, ppid, comm) in processes().items():
        if ppid == me and comm in names:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
