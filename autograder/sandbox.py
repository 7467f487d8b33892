"""The sandbox student code runs in: bubblewrap (Debian's `bubblewrap`), when it works here.

Inside, the child process sees only what it needs, read-only: the system (/usr, /lib, /etc, ...),
Python and its packages, the few grader files that run probes (CHILD_FILES), the data, and
the student's working folder; and an empty /tmp of its own. It cannot see the reference solution,
the hidden checks, the calibration, the instructor's files or other students' submissions. It
has no network and lives in its own PID namespace, so every process the student's code starts
dies with it. Where bubblewrap is missing or not permitted, grading still runs, unsandboxed, and
says so.
"""

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BWRAP_ARGS = ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
              "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]
SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
# what the child imports from this repository: the runner, the probes and what they use, the data package
CHILD_FILES = ["autograder/__init__.py", "autograder/runner.py", "autograder/probes.py", "autograder/compare.py",
               "autograder/submission.py", "autograder/checks/__init__.py", "data"]


def visible_paths():
    """The paths the child sees (besides the folders given to `wrap`)."""
    python = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.abspath(sys.executable))}
    # package folders, but nothing else of this repository (its venv excepted): not solution/, tests/, ...
    python |= {p for p in sys.path if p and os.path.isdir(p)
               and (not Path(p).resolve().is_relative_to(ROOT) or Path(p).resolve().is_relative_to(Path(sys.prefix).resolve()))}
    return SYSTEM + sorted(python) + [str(ROOT / name) for name in CHILD_FILES]


def _binds(paths):
    binds = []
    for path in paths:
        if not path or not os.path.lexists(path):
            continue
        if os.path.islink(path) and path in SYSTEM:  # /bin -> usr/bin on merged-/usr systems
            binds += ["--symlink", os.readlink(path), path]
        else:
            binds += ["--ro-bind", path, path]
            if os.path.realpath(path) != path:
                binds += ["--ro-bind", path, os.path.realpath(path)]
    return binds


@functools.lru_cache(maxsize=None)
def available():
    """(True, "") when bubblewrap runs here, else (False, why)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, "bubblewrap is not installed (apt-get install bubblewrap)"
    probe = subprocess.run([bwrap, *_binds(SYSTEM), *BWRAP_ARGS, "--", "/bin/true"], capture_output=True, text=True)
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
    folders = _binds([os.path.realpath(f) for f in readable if f and os.path.isdir(f)])  # after /tmp is made
    return [shutil.which("bwrap"), *_binds(visible_paths()), *BWRAP_ARGS, *folders, "--", *argv], ""
