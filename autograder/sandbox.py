"""The sandbox student code runs in: bubblewrap (Debian's `bubblewrap`), when it works here.

Inside, the child grading process sees the file system read-only (its own /tmp excepted), has
no network, and lives in its own PID namespace, so every process the student's code starts dies
with it. Where bubblewrap is missing or not permitted, grading still runs, unsandboxed, and says so.
"""

import functools
import os
import shutil
import subprocess

BWRAP_ARGS = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
              "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]


@functools.lru_cache(maxsize=None)
def available():
    """(True, "") when bubblewrap runs here, else (False, why)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bubblewrap is not installed (apt-get install bubblewrap)"
    probe = subprocess.run([bwrap, *BWRAP_ARGS, "--", "/bin/true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"bubblewrap cannot create its namespaces here ({probe.stderr.strip()[:200]})"
    return True, ""


def wrap(argv, readable=()):
    """`argv` to run inside the sandbox, or unchanged (with the reason) when it is not available.

    `readable`: folders the child must see although they may lie under /tmp (the tree graded,
    the data folders), bound read-only at the same path."""
    ok, why = available()
    if not ok:
        return list(argv), f"WARNING: student code runs without a sandbox: {why}"
    binds = []
    for folder in readable:
        if folder and os.path.isdir(folder):
            binds += ["--ro-bind", os.path.realpath(folder), os.path.realpath(folder)]
    return [shutil.which("bwrap"), *BWRAP_ARGS, *binds, "--", *argv], ""
