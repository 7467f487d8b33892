"""What a child may use of the machine, and what it used: control groups where the grader can create
them, else its process tree.

- **cgroup v1** (`/sys/fs/cgroup/{cpu,cpuacct,memory,pids}` writable, as root on a VM or a course
  server) or **cgroup v2** (a unified hierarchy whose group holding the grader already delegates
  `cpu`, `memory` and `pids` to its sub-groups): each child runs in a group of its own, created
  under the grader's own group (as /proc/self/cgroup names it) as `hw2-<slot>/<n>`, `<slot>`
  being the grading's uid (sandbox._free_uid) or its process id. The group has one core (CFS quota
  = period), the child's memory (HW2_MEMORY_GB) and process limits, and counts the CPU time of
  every process in it, however they were started (setsid, double fork). The child joins its groups
  before it runs anything (`wrap`: a shell that writes its pid to each group's cgroup.procs, then
  execs the child); after the child, every process left in the group is killed and the group
  removed. Groups left by a grading that was killed are removed when its uid is taken again.
- **process tree** (no writable cgroups: Docker mounts them read-only; HW2_CGROUPS=0 forces it):
  the CPU time of the processes descending from the child, each one's own and that of its reaped
  children (utime + stime + cutime + cstime). The child's runner is a child subreaper, so a process
  that leaves the tree (double fork) comes back to it, and its time reaches the runner's cutime
  when the runner reaps it (a child forked into a bubblewrap sandbox counts the tree of the sandbox's holder
  too: where orphans go when the runner is no longer a subreaper, as they stay in a fresh child's tree).
  No quota: a busy neighbour slows the child, but is not charged to it.

`child_groups()` gives one child's accounting, of either kind, with the same methods; `kind()` says
which kind this grading uses (results.json's `extra_data.cpu_accounting`).
"""

import functools
import os
import signal
import time
from pathlib import Path

V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
CGROUP_V1, CGROUP_V2, PROCESS_TREE = "cgroup v1", "cgroup v2", "process tree"
PREFIX = "hw2-"  # the groups a grading creates under its own: hw2-<slot>/<n>
SANDBOX_PROCESSES = 4  # the group's pids limit is the child's process limit plus the sandbox's own (bubblewrap's)
# joins the groups named before "--" (writing its pid to each cgroup.procs), then execs what follows
JOIN = 'for f; do shift; if [ "$f" = -- ]; then exec "$@"; fi; echo $$ > "$f" || exit 125; done; exit 125'


class Unavailable(Exception):
    """No writable control groups here; the message says why."""


def _read(path):
    return Path(path).read_text().strip()


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def own_groups(proc_cgroup="/proc/self/cgroup"):
    """{controller: this process's group}; cgroup v2's group under the key ""."""
    groups = {}
    for line in Path(proc_cgroup).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups


def mounts(mountinfo="/proc/self/mountinfo"):
    """[(mount point, root of the mount, "cgroup" or "cgroup2", {super options})] of the cgroup file systems."""
    found = []
    for line in Path(mountinfo).read_text().splitlines():
        before, after = line.split(" - ", 1)
        fields, tail = before.split(), after.split()
        if tail[0] in ("cgroup", "cgroup2"):
            options = set(tail[2].split(",")) if len(tail) > 2 else set()
            found.append((fields[4].replace("\\040", " "), fields[3], tail[0], options))
    return found


def _folder(mount_point, mount_root, group):
    """The folder of `group` (a path in the hierarchy) in a mount of the hierarchy rooted at `mount_root`."""
    relative = os.path.relpath(group, mount_root) if mount_root != "/" else group.lstrip("/")
    if relative.startswith(".."):  # the group is outside what is mounted (another cgroup namespace)
        relative = ""
    return Path(mount_point) / (relative if relative != "." else "")


def own_folders(proc_cgroup="/proc/self/cgroup", mountinfo="/proc/self/mountinfo"):
    """(kind, {controller: folder of this process's own group}) of the first hierarchy that has every
    controller needed; Unavailable saying why when none has."""
    groups, found = own_groups(proc_cgroup), mounts(mountinfo)
    v1 = {}
    for point, root, fstype, options in found:
        for controller in V1_CONTROLLERS:
            if fstype == "cgroup" and controller in options and controller in groups and controller not in v1:
                v1[controller] = _folder(point, root, groups[controller])
    if len(v1) == len(V1_CONTROLLERS):
        return CGROUP_V1, v1
    for point, root, fstype, _ in found:
        if fstype == "cgroup2" and "" in groups:
            folder = _folder(point, root, groups[""])
            try:
                delegated = set(_read(folder / "cgroup.subtree_control").split())
            except OSError:
                continue
            if set(V2_CONTROLLERS) <= delegated:
                return CGROUP_V2, {c: folder for c in V2_CONTROLLERS}
            missing = sorted(set(V2_CONTROLLERS) - delegated)
            raise Unavailable(f"the cgroup v2 group {groups['']} does not delegate {', '.join(missing)} to its "
                              f"sub-groups")
    raise Unavailable("no cgroup hierarchy with the controllers " + ", ".join(V1_CONTROLLERS) + " is mounted")


class ChildGroups:
    """One child's control groups: `<own group>/hw2-<slot>/<n>` in each hierarchy."""

    def __init__(self, kind, folders, slot, memory_bytes, processes):
        self.kind = kind
        self.parents = {c: Path(f) / f"{PREFIX}{slot}" for c, f in folders.items()}
        self.folders = None
        self.memory_bytes, self.processes = int(memory_bytes), int(processes)

    def _unique(self):
        """The distinct folders of this child (cpu and cpuacct may be one hierarchy)."""
        return list(dict.fromkeys(self.folders.values()))

    def create(self):
        """Make the groups and write their limits; OSError when the hierarchy refuses."""
        for parent in dict.fromkeys(self.parents.values()):
            parent.mkdir(exist_ok=True)
            if self.kind == CGROUP_V2:
                _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in V2_CONTROLLERS))
        for n in range(1, 10_000):
            names = {c: p / str(n) for c, p in self.parents.items()}
            if not any(f.exists() for f in names.values()):
                break
        self.folders = names
        for folder in self._unique():
            folder.mkdir()
        try:
            self._limit()
        except OSError:
            self.remove()
            raise
        return self

    def _limit(self):
        if self.kind == CGROUP_V1:
            cpu, memory, pids = self.folders["cpu"], self.folders["memory"], self.folders["pids"]
            _write(cpu / "cpu.cfs_quota_us", _read(cpu / "cpu.cfs_period_us"))  # one core
            _write(memory / "memory.limit_in_bytes", self.memory_bytes)
            if (memory / "memory.memsw.limit_in_bytes").exists():  # swap counted too, where the kernel counts it
                try:
                    _write(memory / "memory.memsw.limit_in_bytes", self.memory_bytes)
                except OSError:
                    pass
            _write(pids / "pids.max", self.processes + SANDBOX_PROCESSES)
        else:
            folder = self.folders["cpu"]
            _write(folder / "cpu.max", "100000 100000")  # one core
            _write(folder / "memory.max", self.memory_bytes)
            if (folder / "memory.swap.max").exists():
                _write(folder / "memory.swap.max", 0)
            _write(folder / "pids.max", self.processes + SANDBOX_PROCESSES)

    def wrap(self, argv):
        """`argv`, run so that it joins this child's groups before it starts."""
        procs = [str(folder / "cgroup.procs") for folder in self._unique()]
        return ["/bin/sh", "-c", JOIN, "hw2-join", *procs, "--", *argv]

    def started(self, pid):
        """Nothing to do: the child joined its groups itself."""

    def procs_files(self):
        """The files a process writes itself into to join the groups (a child forked from the template)."""
        return [str(folder / "cgroup.procs") for folder in self._unique()]

    def cpu_seconds(self):
        """CPU time used by every process that ran in the group so far."""
        try:
            if self.kind == CGROUP_V1:
                return int(_read(self.folders["cpuacct"] / "cpuacct.usage")) / 1e9
            for line in _read(self.folders["cpu"] / "cpu.stat").splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            pass
        return 0.0

    def out_of_memory(self):
        """Whether the kernel killed a process of the group for its memory limit."""
        try:
            if self.kind == CGROUP_V1:
                text = _read(self.folders["memory"] / "memory.oom_control")
            else:
                text = _read(self.folders["memory"] / "memory.events")
            return any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0 for line in text.splitlines())
        except (OSError, ValueError, IndexError):
            return False

    def close(self):
        """Kill every process left in the groups and remove them."""
        if self.folders is not None:
            kill_all(list(self._unique()))
            self.remove()

    def remove(self):
        for folder in self._unique():
            _remove(folder)
        for parent in dict.fromkeys(self.parents.values()):  # the grading's, once its last child is gone
            try:
                os.rmdir(parent)
            except OSError:
                pass
        self.folders = None


def _procs(folder):
    try:
        return [int(pid) for pid in _read(Path(folder) / "cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def kill_all(folders, attempts=100):
    """SIGKILL every process of the groups `folders` until none is left (a process that forks meanwhile
    is caught by the next pass; the pids limit bounds them)."""
    for folder in folders:
        if (Path(folder) / "cgroup.kill").exists():  # cgroup v2: the kernel kills them all at once
            try:
                _write(Path(folder) / "cgroup.kill", 1)
            except OSError:
                pass
    for _ in range(attempts):
        left = [pid for folder in folders for pid in _procs(folder)]
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _remove(folder):
    """Remove a group whose processes are gone (the kernel may take a moment to release them)."""
    for _ in range(100):
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def clean_stale(slot):
    """Kill the processes and remove the groups a killed grading left under `hw2-<slot>` (called when
    that slot's uid is taken again)."""
    try:
        _, folders = own_folders()
    except (Unavailable, OSError):
        return
    for folder in dict.fromkeys(folders.values()):
        parent = folder / f"{PREFIX}{slot}"
        if not parent.is_dir():
            continue
        children = [p for p in parent.iterdir() if p.is_dir()]
        kill_all([*children, parent])
        for child in children:
            _remove(child)
        _remove(parent)


class ProcessTree:
    """The fallback: the CPU time of the processes descending from the child (see the module's docstring)."""

    kind = PROCESS_TREE

    def __init__(self):
        self.pids = []  # the roots of the trees counted: the child; for a child forked into a sandbox, its holder too
        self.seen = 0.0  # the most counted so far: a process caught between its parent's exit and its reparenting is not lost

    def wrap(self, argv):
        return list(argv)

    def started(self, pid):
        """Count `pid`'s tree (called once for the child, and once for the holder of a sandbox the child joined:
        its orphans go to the sandbox's init, not to the child, when the child is no longer a subreaper)."""
        self.pids.append(pid)

    def procs_files(self):
        return []

    def cpu_seconds(self):
        if not self.pids:
            return 0.0
        self.seen = max(self.seen, sum(tree_cpu_seconds(pid) for pid in self.pids))
        return self.seen

    def out_of_memory(self):
        return False

    def close(self):
        """Nothing to do: the sandbox's layer kills what is left."""


TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(parent pid, CPU ticks: its own and its reaped children's) of process `pid`, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ", whatever comm holds
    return int(fields[1]), sum(int(f) for f in fields[11:15])  # ppid; utime, stime, cutime, cstime


def tree_cpu_seconds(root):
    """CPU seconds of `root` and its descendants (zombies included), each with its reaped children's."""
    parents, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                parents[int(entry)], ticks[int(entry)] = found
    children = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in ticks:
            continue
        seen.add(pid)
        total += ticks[pid]
        todo.extend(children.get(pid, ()))
    return total / TICKS


@functools.lru_cache(maxsize=None)
def _probe():
    """(kind, {controller: own folder}) when this process can create limited groups, else (PROCESS_TREE,
    why not). Tried once per process, with a group of its own that is removed at once."""
    if os.environ.get("HW2_CGROUPS", "1") == "0":
        return PROCESS_TREE, "HW2_CGROUPS=0"
    try:
        kind, folders = own_folders()
        trial = ChildGroups(kind, folders, f"probe-{os.getpid()}", 2**30, 8).create()
        trial.close()
        for parent in dict.fromkeys(trial.parents.values()):
            _remove(parent)
        return kind, folders
    except Unavailable as error:
        return PROCESS_TREE, str(error)
    except OSError as error:
        return PROCESS_TREE, f"the control groups cannot be created here ({error.strerror or error})"


def kind():
    """How this grading counts a child's CPU time: CGROUP_V1, CGROUP_V2 or PROCESS_TREE."""
    return _probe()[0]


def description():
    """`kind()`, with why there are no control groups when there are none."""
    found, detail = _probe()
    return found if found != PROCESS_TREE else f"{PROCESS_TREE} (no control groups: {detail})"


def child_groups(slot, memory_gb, processes):
    """The accounting of one new child: its ChildGroups (created) where control groups work, else a
    ProcessTree. `slot`: the grading's uid, or None (then this process's id)."""
    found, folders = _probe()
    if found == PROCESS_TREE:
        return ProcessTree()
    groups = ChildGroups(found, folders, slot if slot is not None else f"p{os.getpid()}", memory_gb * 2**30, processes)
    try:
        return groups.create()
    except OSError:  # worked when probed: fall back rather than fail this child
        return ProcessTree()
