"""Where the student's code runs: a child process without privileges, that sees only what it needs.

Two layers, the first that works here is used (`HW2_SANDBOX=bubblewrap|user` forces one):

- **bubblewrap** (Debian's `bubblewrap`): namespaces of its own (mounts, PIDs, network, IPC,
  hostname). The child sees, read-only: the system (`/usr`, `/etc`, ...; with
  `/usr/share/datasets` hidden), Python and its packages, the package `autograder/child/`,
  the student's working folder, and a stand-in module when a test needs one; a size-limited
  `/tmp` of its own and a minimal `/dev`; no network; an environment of a few variables. It runs
  as an unprivileged uid with no capabilities: run as root, bubblewrap sets up the mounts and the
  child switches to a uid of its own (`setpriv`, one uid per child running at once, of any grading); run as another
  user, `--unshare-user --uid 65534 --cap-drop ALL`. When the child exits, every process it
  started dies with its PID namespace.
- **user** (no namespaces, as inside a Docker container such as Gradescope's; needs root): the
  child runs as an unprivileged numeric uid (no account needed) with the same environment and
  limits, in a working folder it owns; grading refuses to start while anything private is
  readable by that uid (see `private_paths`); after every child, every process of that uid is
  killed, its files in every folder it could write (`writable_places`) removed, and its System V
  IPC objects too.

In both, the child confines itself before it imports the student's code (autograder/child/confine.py:
a seccomp filter denying sockets, IPC and the other channels out of its process; Landlock, where
the kernel has it, keeping its writes in its own home), and refuses to run if it cannot; the
layer's check runs such a child first (`check_confinement`), so a layer whose children cannot be
confined is never used, and the grader's stand-ins run only in a child that has said it is
(autograder/isolation.py).

When neither works, grading stops with a message saying how to fix it, unless the instructor
passes `--unsandboxed` (`HW2_UNSANDBOXED=1`): then the results say so in `results.json`, the
summary and the gradebook; its child confines itself as far as the machine allows, silently.
"""

import copy
import ctypes
import fcntl
import functools
import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from autograder import ROOT, cgroups
from autograder.child import confine

CHILD_PACKAGE = ROOT / "autograder" / "child"
PACKAGE_INIT = ROOT / "autograder" / "__init__.py"
SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
HIDDEN = ["/usr/share/datasets"]  # Debian's Fashion-MNIST: the dev labels are in its training file
STANDINS_MOUNT = "/run/hw2/standins.py"
TMP_MB = 512
MEMORY_GB = float(os.environ.get("HW2_MEMORY_GB", 8))  # the child's address-space limit, and its memory group's
# processes and threads of the child's uid (RLIMIT_NPROC) and of its control group: a grading child
# peaks at 4 with torch on one thread; a DataLoader with 4 workers adds 16; twice that, rounded
PROCESSES = 32
FIRST_UID = int(os.environ.get("HW2_SANDBOX_UID", 64000))  # the child's uids: FIRST_UID, FIRST_UID + 1, ...
UID_SLOTS = 64
CONFINEMENT_PROBE = [sys.executable, "-m", "autograder.child.confine"]  # confines itself, prints how (JSON)
# filesystems never walked for writable folders: the kernel's own, and the network's
NOT_WALKED = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "debugfs", "tracefs", "securityfs", "pstore", "bpf",
              "configfs", "fusectl", "binfmt_misc", "autofs", "nsfs", "efivarfs", "rpc_pipefs", "selinuxfs",
              "hugetlbfs", "nfs", "nfs4", "cifs", "smb3", "ceph", "afs", "fuse.sshfs"}
WALK_LIMIT = 500_000  # folders visited at most when looking for writable ones
NAMESPACES = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "hw2-sandbox",
              "--unshare-cgroup-try", "--die-with-parent", "--new-session"]


class SandboxError(RuntimeError):
    """Student code cannot be isolated here; the message says why and how to fix it."""


def child_environment(memory_gb, home="/tmp", reap=True, confined=True):
    """The only variables the child gets. `reap`: the child kills its uid's other processes after
    each request (its uid is its own). `confined`: a child that cannot confine itself runs nothing."""
    return {**({"HW2_REAP": "1"} if reap else {}), "HW2_CONFINE": "required" if confined else "try", "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "LANG": "C.UTF-8",
            "MPLCONFIGDIR": f"{home}/matplotlib", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "OMP_NUM_THREADS": "1", "HW2_THREADS": os.environ.get("HW2_THREADS", "1"),
            "HW2_MEMORY_GB": f"{memory_gb:g}", "HW2_PROCESSES": str(PROCESSES),
            "PYTHONPATH": str(ROOT)}  # where autograder/child is, whatever the venv's own path says


def python_paths():
    """The folders Python needs: its installation, the virtual environment's packages."""
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.abspath(sys.executable)),
             os.path.dirname(os.path.realpath(sys.executable))}
    for scheme in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(sysconfig.get_paths()[scheme])
    return sorted(p for p in paths if p and os.path.isdir(p))


def _bind(path, target=None):
    """Arguments binding `path` read-only at `target` (its own path), and at its real path too."""
    target = target or path
    binds = ["--ro-bind", path, target]
    if target == path and os.path.realpath(path) != path:
        binds += ["--ro-bind", path, os.path.realpath(path)]
    return binds


def _parents(binds):
    """Arguments creating, traversable by the child's uid, the folders above the targets of `binds`
    (bubblewrap would create them with mode 0700 when run as root), outside the system folders.
    They come after the sandbox's own /tmp is made, so folders under /tmp work too."""
    targets = [binds[i + 2] for i, arg in enumerate(binds) if arg in ("--ro-bind", "--bind")]
    parents = set()
    for target in targets:
        for parent in Path(target).parents:
            if str(parent) not in ("/", "/tmp") and not any(parent.is_relative_to(top) for top in [*SYSTEM, "/proc", "/dev"]):
                parents.add(str(parent))
    parents -= set(targets)
    return [arg for parent in sorted(parents, key=lambda p: p.count("/")) for arg in ("--perms", "0755", "--dir", parent)]


def _system_binds():
    binds = []
    for path in SYSTEM:
        if os.path.islink(path):  # /bin -> usr/bin on merged-/usr systems
            binds += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            binds += _bind(path)
    for path in HIDDEN:
        if os.path.isdir(path):
            binds += ["--tmpfs", path]
    return binds


def _setpriv(uid):
    return [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


@dataclass
class Child:
    """How to start one child: its command line, environment and current folder."""
    argv: list
    env: dict
    cwd: str


@dataclass
class Forked:
    """How a child forked from the warm template (autograder/child/template.py) enters its sandbox: the
    uid it switches to (None: it stays the grader's), its environment and current folder, and the
    command line of the bubblewrap process whose namespaces it joins (None: none), which writes its
    sandbox's pid to the descriptor it was given, and "ready" on its output once the sandbox is built."""
    uid: object
    env: dict
    cwd: str
    holder: list = None


def _forked_as_child(layer, workdir, memory_gb, standins):
    """(Forked, where the child finds the stand-ins) for a layer without namespaces (the user layer, the
    unsandboxed mode): the folder, environment and uid its `child` gives."""
    child, where = layer.child([], workdir, memory_gb, standins)
    return Forked(layer.uid, child.env, child.cwd), where


class Bubblewrap:
    name = "bubblewrap"
    confines = True  # its child runs nothing unconfined; the stand-ins' child must say it is

    def __init__(self, uid=None):
        self.uid = uid  # the uid the child switches to (root only); None: a user namespace
        self.confinement = None  # what its child reported at the check (confine.status)

    @property
    def description(self):
        who = f"uid {self.uid}" if self.uid is not None else "uid 65534 in a user namespace"
        return f"bubblewrap (namespaces, {who}, no capabilities{confinement_note(self.confinement)})"

    def _wrap(self, argv, env, binds=(), info_fd=None):
        """bubblewrap's command line running `argv`; with `info_fd`, a holder of the sandbox instead: its
        command (`argv`) stays the grader's uid without capabilities, and bubblewrap writes the sandbox's
        pid to `info_fd`."""
        user = [] if self.uid is not None else ["--unshare-user", "--uid", "65534", "--gid", "65534",
                                                "--cap-drop", "ALL"]
        setenv = [arg for key, value in env.items() for arg in ("--setenv", key, value)]
        inner = _setpriv(self.uid) if self.uid is not None and info_fd is None else []
        holder = ["--cap-drop", "ALL", "--info-fd", str(info_fd)] if info_fd is not None and not user else []
        binds = list(binds)
        return [shutil.which("bwrap"), *_system_binds(), *user, *NAMESPACES, *holder, "--clearenv", *setenv,
                "--perms", "1777", "--size", str(TMP_MB * 2**20), "--tmpfs", "/tmp", "--dev", "/dev",
                "--proc", "/proc", *_parents(binds), *binds, "--chdir", "/tmp", "--", *inner, *argv]

    def _binds(self, workdir, standins):
        binds = [arg for path in python_paths() for arg in _bind(path)]
        binds += _bind(str(PACKAGE_INIT)) + _bind(str(CHILD_PACKAGE)) + _bind(str(workdir))
        if standins is not None:
            binds += _bind(str(standins), STANDINS_MOUNT)
        return binds

    def child(self, argv, workdir, memory_gb, standins=None):
        return Child(self._wrap(argv, child_environment(memory_gb), self._binds(workdir, standins)), {}, "/"), \
            STANDINS_MOUNT

    def forked(self, workdir, memory_gb, standins, info_fd):
        """(Forked, where the child finds the stand-ins), or None: a child forked into a sandbox that
        bubblewrap holds for it (the same mounts as `child`'s, held by a `sleep` of the grader's uid
        without capabilities, which the child's uid cannot signal); only as root, where the child
        switches to a uid of its own (in a user namespace, the template could not join it)."""
        if self.uid is None:
            return None
        holder = self._wrap(["/bin/sh", "-c", "echo ready; exec /bin/sleep infinity"], {"PATH": "/usr/bin:/bin"},
                            self._binds(workdir, standins), info_fd)
        environment = dict(child_environment(memory_gb), PWD="/tmp")  # (bubblewrap's --chdir sets PWD)
        return Forked(self.uid, environment, "/tmp", holder), STANDINS_MOUNT

    def check(self):
        """None when this layer runs here, else why not."""
        if shutil.which("bwrap") is None:
            return "bubblewrap is not installed (apt-get install bubblewrap)"
        if self.uid is not None and shutil.which("setpriv") is None:
            return "setpriv is not installed (apt-get install util-linux)"
        probe = subprocess.run(self._wrap(["/bin/sh", "-c", "test \"$(id -u)\" != 0"], {"PATH": "/usr/bin:/bin"}),
                               capture_output=True, text=True)
        if probe.returncode != 0:
            return f"bubblewrap cannot create its namespaces here ({probe.stderr.strip()[:200] or 'exit code ' + str(probe.returncode)})"
        return check_confinement(self)

    def after_child(self):
        """Nothing to do: the child's PID namespace and /tmp die with it."""

    def over_limit(self):
        """False: the child's /tmp is a tmpfs of TMP_MB."""
        return False


class UnprivilegedUser:
    name = "user"
    confines = True

    def __init__(self, uid):
        self.uid = uid
        self.home = None
        self.confinement = None

    @property
    def description(self):
        return f"unprivileged uid {self.uid} (no namespaces{confinement_note(self.confinement)})"

    def child(self, argv, workdir, memory_gb, standins=None):
        self.after_child()
        self.home = Path(tempfile.mkdtemp(prefix="hw2-child-"))  # root's, 0700
        os.chmod(self.home, 0o711)
        home = self.home / "home"
        home.mkdir(mode=0o700)
        os.chown(home, self.uid, self.uid)
        where = None
        if standins is not None:  # readable by this child only, removed with it
            where = self.home / "standins.py"
            shutil.copyfile(standins, where)
            os.chown(where, self.uid, self.uid)
            os.chmod(where, 0o400)
        env = child_environment(memory_gb, home=str(home))
        return Child([*_setpriv(self.uid), *argv], env, str(home)), (str(where) if where else None)

    def forked(self, workdir, memory_gb, standins, info_fd):
        return _forked_as_child(self, workdir, memory_gb, standins)

    def check(self):
        if os.geteuid() != 0:
            return "an unprivileged uid needs the grader to run as root"
        if shutil.which("setpriv") is None:
            return "setpriv is not installed (apt-get install util-linux)"
        probe = subprocess.run([*_setpriv(self.uid), "/bin/sh", "-c", "test \"$(id -u)\" != 0"], capture_output=True,
                               env={"PATH": "/usr/bin:/bin"})
        if probe.returncode != 0:
            return f"setpriv cannot switch to uid {self.uid} (exit code {probe.returncode})"
        readable = readable_by(self.uid, private_paths())
        if readable:
            return ("these private files are readable by the unprivileged uid the child runs as: "
                    + ", ".join(readable) + f". Fix: `chmod -R go-rwx {' '.join(readable)}` (they stay readable by "
                    f"root, which grades)")
        return check_confinement(self)

    def over_limit(self):
        """Whether the child's files (in its folder and every folder it could write) take more than
        TMP_MB (this layer has no /tmp of its own to bound them)."""
        used = 0
        for folder in filter(None, [self.home, *writable_places(self.uid)]):
            used += disk_usage_of(self.uid, folder)  # self.home is root's: its contents are not counted twice
            if used > TMP_MB * 2**20:
                return True
        return False

    def after_child(self):
        """Kill every process of the child's uid, then remove what it left: its files in every folder
        it could write, its System V IPC objects, its folder."""
        kill_processes_of(self.uid)
        for folder in writable_places(self.uid):
            remove_files_of(self.uid, folder)
        remove_ipc_of(self.uid)
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


class Unsandboxed:
    name = "none"
    uid = None
    confines = False  # the child confines itself as far as it can; nothing is required of it
    description = "NONE: student code ran with the grader's privileges (--unsandboxed)"

    def child(self, argv, workdir, memory_gb, standins=None):
        env = child_environment(memory_gb, tempfile.gettempdir(), reap=False, confined=False)
        return Child(list(argv), env, str(ROOT)), (str(standins) if standins else None)

    def forked(self, workdir, memory_gb, standins, info_fd):
        return _forked_as_child(self, workdir, memory_gb, standins)

    def check(self):
        return None

    def after_child(self):
        pass

    def over_limit(self):
        return False


def check_confinement(layer):
    """None when a child started by `layer` confines itself (autograder/child/confine.py: it is run
    as the child is, and reports), else why not, with the fix. What it reported is kept in
    `layer.confinement`."""
    with tempfile.TemporaryDirectory(prefix="hw2-confinement-") as empty:
        child, _ = layer.child(CONFINEMENT_PROBE, empty, 1)
        try:
            done = subprocess.run(child.argv, env=child.env, cwd=child.cwd, capture_output=True, text=True,
                                  timeout=120)
        except subprocess.TimeoutExpired:
            return "its child did not say within 120 s whether it could confine itself"
        finally:
            layer.after_child()
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
        why = confine.missing(found)
    except (ValueError, IndexError):
        why = done.stderr.strip()[-800:] or f"it exited with code {done.returncode} without a word"
    if why:
        return f"its child cannot be confined, so it would have channels out of its process: {why}"
    layer.confinement = found
    return None


def confinement_note(found):
    """How a child is confined, for a layer's description."""
    if not found:
        return ""
    landlock = (f"Landlock ABI {found['landlock']}" if found["landlock"] else
                f"no Landlock ({found.get('landlock_note') or 'the kernel has none'})")
    return f", seccomp filter, {landlock}"


def private_paths(extra=()):
    """What the child must never read: the reference, the hidden checks, the calibration, the
    instructor's tests, the repository's history, earlier grades and bundles, the data that judges (Fashion-MNIST's cache and Debian's copy, Sydney-Captions),
    other submissions (`extra`)."""
    from data import CACHE_DIR

    paths = [ROOT / "solution", ROOT / "autograder" / "checks", ROOT / "autograder" / "calibration.json",
             ROOT / "tests", ROOT / ".git", ROOT / "grades", ROOT / "dist", Path(CACHE_DIR),
             Path("/usr/share/datasets")]
    if os.environ.get("SYDNEY_DIR"):
        paths.append(Path(os.environ["SYDNEY_DIR"]))
    # more of them, e.g. a cluster's TLS keys (autograder/cluster.py), separated by os.pathsep
    paths += [Path(p) for p in os.environ.get("HW2_PRIVATE_PATHS", "").split(os.pathsep) if p]
    return [str(p) for p in [*paths, *map(Path, extra)] if os.path.exists(p)]


def readable_by(uid, paths):
    """The paths of `paths` that uid `uid` can read (or list)."""
    if not paths:
        return []
    script = 'for p in "$@"; do if [ -r "$p" ]; then echo "$p"; fi; done'
    found = subprocess.run([*_setpriv(uid), "/bin/sh", "-c", script, "sh", *paths], capture_output=True, text=True,
                           env={"PATH": "/usr/bin:/bin"})
    return found.stdout.split()


def kill_processes_of(uid):
    """SIGKILL every process of `uid` (kill(-1) as that uid: one pass the kernel makes atomically)."""
    for _ in range(3):
        subprocess.run([*_setpriv(uid), sys.executable, "-S", "-c",
                        "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass"],
                       capture_output=True, env={"PATH": "/usr/bin:/bin"})
        if not _processes_of(uid):
            return
        time.sleep(0.05)


def _processes_of(uid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
            except OSError:
                pass
    return found


def disk_usage_of(uid, folder):
    """Bytes on disk of what `uid` owns in `folder`: its entries there and everything under its own
    folders (never following links; other users' folders are not walked)."""
    used = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid != uid:
            continue
        used += info.st_blocks * 512
        if entry.is_dir(follow_symlinks=False):
            for path, dirs, files in os.walk(entry.path):
                for name in files + dirs:
                    try:
                        used += os.lstat(os.path.join(path, name)).st_blocks * 512
                    except OSError:
                        pass
    return used


def remove_files_of(uid, folder):
    """Remove what `uid` left under `folder` (never following links)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


@functools.lru_cache(maxsize=None)
def writable_places(uid):
    """The folders where `uid` (its group: the same number, no other) can create files: every
    folder of a local filesystem that it can reach and write, such as /tmp, /var/tmp, /dev/shm,
    /run/lock, /dev/mqueue. Found once per grading process by walking the mounts: folders only,
    never following links, never below a folder the uid cannot enter (by the mode bits; ACLs are
    not read), at most WALK_LIMIT folders."""
    skipped = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            where, kind = fields[4], fields[fields.index("-") + 1]
            if kind in NOT_WALKED:
                skipped.add(where.replace("\\040", " "))

    def allows(info, bits):  # bits: 0o7 masks (x: 1, w|x: 3), for the owner, the group, the others
        if info.st_uid == uid:
            return info.st_mode >> 6 & bits == bits
        if info.st_gid == uid:
            return info.st_mode >> 3 & bits == bits
        return info.st_mode & bits == bits

    found, stack, visited = [], ["/"], 0
    while stack and visited < WALK_LIMIT:
        folder = stack.pop()
        visited += 1
        try:
            info = os.lstat(folder)
            entries = list(os.scandir(folder))
        except OSError:
            continue
        if allows(info, 0o3):
            found.append(folder)
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False) and entry.path not in skipped and allows(
                        entry.stat(follow_symlinks=False), 0o1):
                    stack.append(entry.path)
            except OSError:
                pass
    return tuple(sorted(found))


IPC_KINDS = {"shm": "shmid", "sem": "semid", "msg": "msqid"}  # /proc/sysvipc/<kind>: its id column


def ipc_objects_of(uid):
    """[(kind, id)] of the System V IPC objects that `uid` owns or created."""
    found = []
    for kind, column in IPC_KINDS.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                header, *rows = [line.split() for line in f]
        except (OSError, ValueError):
            continue
        at = {name: index for index, name in enumerate(header)}
        for row in rows:
            if str(uid) in (row[at["uid"]], row[at["cuid"]]):
                found.append((kind, int(row[at[column]])))
    return found


def remove_ipc_of(uid):
    """Remove the System V shared memory segments, semaphore sets and message queues of `uid`."""
    objects = ipc_objects_of(uid)
    if not objects:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    remove = {"shm": lambda i: libc.shmctl(i, 0, None), "sem": lambda i: libc.semctl(i, 0, 0),
              "msg": lambda i: libc.msgctl(i, 0, None)}  # 0: IPC_RMID
    for kind, ident in objects:
        remove[kind](ident)


_held_slots = []


def _uid_locks():
    return Path("/tmp") / f"hw2-sandbox-uids-{os.geteuid()}"


def reclaim_uid(uid, seconds=5):
    """After a grading process holding `uid` was killed (autograder/batch.py): with the uid's lock taken, so
    that no other grading gets it meanwhile, kill every process of `uid` and remove its files in the shared
    temporary folders. A grading that took the uid first has done the same (`_free_uid`)."""
    try:
        fd = os.open(_uid_locks() / f"{uid}.lock", os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        end = time.time() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.time() > end:
                    return
                time.sleep(0.05)
        kill_processes_of(uid)
        for folder in ("/tmp", "/var/tmp", "/dev/shm"):
            remove_files_of(uid, folder)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=None)
def _free_uid():
    """A uid of its own for this grading process (see _take_uid)."""
    return _take_uid()


def extra_uids(count):
    """`count` more uids for this grading process, one per child it runs beside the first (autograder/grade.py
    runs up to HW2_PARALLEL children at once: two children never share a uid); held, as _free_uid's, until
    this process ends. [None] * count where the layer needs none (bubblewrap run as another user)."""
    if os.geteuid() != 0:
        return [None] * count
    return [_take_uid() for _ in range(count)]


def use_uid(uid):
    """In a worker process of a grading (a fork of it running one child): the chosen layer, with `uid` (one of
    extra_uids, or the grading's own) for its children; None leaves the layer as it is."""
    if uid is not None and _chosen and getattr(_chosen[0], "uid", None) is not None:
        chosen = copy.copy(_chosen[0])
        chosen.uid = uid
        _chosen[0] = chosen


def clear_uid(uid):
    """After a grading's worker process was stopped mid-test: kill every process of `uid` (one of this
    grading's), remove its files in the folders it can write, its IPC objects and its control groups."""
    if uid is None:
        return
    kill_processes_of(uid)
    for folder in writable_places(uid):
        remove_files_of(uid, folder)
    remove_ipc_of(uid)
    cgroups.clean_stale(uid)


def _take_uid():
    """The first of FIRST_UID.. that no account uses, no process runs as, and no other grading holds (a lock
    file, held until this process ends). The locks are in /tmp whatever TMPDIR says, so that every grading
    on the machine sees them."""
    folder = _uid_locks()
    folder.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not os.path.isdir(folder) or os.path.islink(folder) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(f"{folder} is not a private folder of this user; remove it")
    for uid in range(FIRST_UID, FIRST_UID + UID_SLOTS):
        try:
            pwd.getpwuid(uid)
            continue  # an account's uid
        except KeyError:
            pass
        fd = os.open(folder / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        if _processes_of(uid):
            kill_processes_of(uid)  # left over from a grading that was killed
        cgroups.clean_stale(uid)  # and its children's control groups
        _held_slots.append(fd)
        return uid
    raise SandboxError(f"no free uid among {FIRST_UID}..{FIRST_UID + UID_SLOTS - 1} for the child")


_chosen = []  # the layer this process uses, once chosen


def layer(allow_unsandboxed=False):
    """The layer student code runs in here, chosen once per process (the first call decides, with its
    `allow_unsandboxed`; later calls get the same layer); SandboxError when none works, unless allowed."""
    if not _chosen:
        _chosen.append(_choose(allow_unsandboxed))
    return _chosen[0]


def _choose(allow_unsandboxed):
    forced = os.environ.get("HW2_SANDBOX", "auto")
    if forced not in ("auto", "bubblewrap", "user", "none"):
        raise SandboxError(f"HW2_SANDBOX={forced!r}: choose auto, bubblewrap, user or none")
    root = os.geteuid() == 0
    uid = _free_uid() if root else None
    candidates = []
    if forced in ("auto", "bubblewrap"):
        candidates.append(Bubblewrap(uid))
    if forced in ("auto", "user") and root:
        candidates.append(UnprivilegedUser(uid))
    reasons = [] if root else ["user: an unprivileged uid needs the grader to run as root"]
    for candidate in candidates:
        why = candidate.check()
        if why is None:
            return candidate
        reasons.append(f"{candidate.name}: {why}")
    if allow_unsandboxed or os.environ.get("HW2_UNSANDBOXED") == "1":
        return Unsandboxed()
    raise SandboxError("student code cannot be isolated here, so grading did not start. "
                       + "; ".join(reasons) + ". Fix one of these (bubblewrap with user namespaces, or run the "
                       "grader as root, e.g. in a container); or, knowing that the student's code then runs with "
                       "your privileges, pass --unsandboxed (make grade UNSANDBOXED=1): the results will say so.")
