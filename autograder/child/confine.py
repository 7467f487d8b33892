"""What the child may do beyond its own process: nothing that opens a channel out, no file left
anywhere but its own home.

`confine()` is called by the runner before it reads the first request, so before any student
code is imported (torch is imported already, and has threads):

- a seccomp filter (libseccomp, through `pyseccomp`), synchronised to every thread of the
  process, makes the calls that would open a channel to another process or machine fail with
  EPERM (a PermissionError in Python): sockets of every family, System V IPC, POSIX message
  queues, reading or tracing other processes (ptrace, process_vm_readv/writev, kcmp,
  pidfd_getfd), io_uring (its operations would bypass the filter), userfaultfd, bpf,
  perf_event_open, the kernel's keyrings (a uid's keyring outlives its processes), file locks,
  leases and change notices (flock, fcntl's lock commands, inotify: seen by any process that can
  open the same file, a read-only one included), new
  namespaces and mounts (unshare, setns, the mount calls, clone with a namespace flag; clone3,
  whose flags a filter cannot read, answers "not implemented", so the C library uses clone), and
  leaving the child's process tree, whose CPU time the process-tree accounting counts (clone with
  CLONE_PARENT, a sibling of the runner; turning the runner's child subreaper off, so that orphans
  go to init).
  Calls of another architecture (32-bit x86, x32) fail the same way. The grader's two pipes,
  inherited, are unaffected.
- Landlock, where the kernel has it: writes only under the child's home ($TMPDIR) and to
  /dev/null, /dev/zero, /dev/full; no TCP bind or connect (ABI 4); abstract unix sockets and
  signals scoped to the child's own processes (ABI 6). Landlock binds the calling thread and
  everything it starts afterwards (every thread of the process from ABI 8).

No new privileges (prctl) is set first: both need it, whatever started the child.

HW2_CONFINE, set by the sandbox layer: "required" (bubblewrap, the user layer): a child that
cannot install the seccomp filter exits before serving any request, saying why and how to fix
it; anything else (the unsandboxed mode): as much as this machine allows, silently.

`python -m autograder.child.confine` confines itself as a child does and prints `status()` as
JSON: how a layer checks, before grading, that its children are confined (autograder/sandbox.py).
pyseccomp is imported only when confining: the students' repository ships this package without it.
"""

import ctypes
import errno
import json
import os
import platform
import socket
import struct
import sys

DENIED = (
    "socket", "socketpair", "socketcall",  # every socket: TCP/UDP, unix (named and abstract), netlink
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",  # System V IPC
    "msgget", "msgsnd", "msgrcv", "msgctl", "ipc",
    "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "perf_event_open",
    "fanotify_init", "inotify_init", "inotify_init1", "flock", "add_key", "request_key", "keyctl",
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot", "open_tree", "open_tree_attr",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "name_to_handle_at",
    "open_by_handle_at",
)
# fcntl's commands that reach other processes: record locks (classic and open-file-description ones:
# any process that can open the same file, read-only included, sees them), leases and directory notices
FCNTL_DENIED = (5, 6, 7, 36, 37, 38, 1024, 1025, 1026)  # F_GETLK, F_SETLK(W), F_OFD_*, F_SETLEASE, F_GETLEASE, F_NOTIFY
CLONE_NAMESPACES = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
CLONE_PARENT, PR_SET_CHILD_SUBREAPER = 0x00008000, 36
PR_SET_NO_NEW_PRIVS = 38

# Landlock (include/uapi/linux/landlock.h); its three calls have the same numbers on these machines
LANDLOCK_CALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
WRITE_FILE, TRUNCATE, REFER = 1 << 1, 1 << 14, 1 << 13
WRITES = (WRITE_FILE | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12)  # ABI 1
TCP_BIND_CONNECT = 1 << 0 | 1 << 1  # ABI 4
SCOPED = 1 << 0 | 1 << 1  # ABI 6: abstract unix sockets, signals
RESTRICT_ALL_THREADS = 1 << 3  # ABI 8
DEVICES = ("/dev/null", "/dev/zero", "/dev/full")

_applied = {"landlock": 0, "landlock_note": "", "error": ""}


def confine(required=None, home=None):
    """Confine this process (see the module's docstring). `required` (default: HW2_CONFINE ==
    "required"): exit, saying why, when the seccomp filter cannot be installed. `home` (default
    $TMPDIR): where it may still write."""
    required = os.environ.get("HW2_CONFINE") == "required" if required is None else required
    home = home or os.environ.get("TMPDIR")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    errors = []
    try:
        _seccomp()
    except Exception as error:
        errors.append(_explain(error))
    try:
        _applied["landlock"], _applied["landlock_note"] = _landlock(libc, home)
    except OSError as error:  # the kernel has Landlock, and refused these rules
        errors.append(f"Landlock refused its rules ({error})")
    _applied["error"] = "; ".join(errors)
    if errors and required:
        raise SystemExit(f"the grading child cannot confine itself, so it runs no student code: {_applied['error']}")


def _seccomp():
    seccomp = _import_pyseccomp()
    denied = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    rules.set_attr(seccomp.Attr.ACT_BADARCH, denied)  # 32-bit and x32 calls
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)  # every thread, torch's included
    for name in DENIED:
        if seccomp.resolve_syscall(seccomp.Arch.NATIVE, name) != -1:  # -1: unknown to this libseccomp
            rules.add_rule(denied, name)
    for command in FCNTL_DENIED:
        rules.add_rule(denied, "fcntl", seccomp.Arg(1, seccomp.EQ, command))
    for flag in (*CLONE_NAMESPACES, CLONE_PARENT):
        rules.add_rule(denied, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(denied, "prctl", seccomp.Arg(0, seccomp.EQ, PR_SET_CHILD_SUBREAPER), seccomp.Arg(1, seccomp.EQ, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.load()


def _import_pyseccomp():
    """pyseccomp, imported only here (see the docstring). It looks for libc and libseccomp with
    ctypes.util.find_library, which runs ldconfig (a second, here): their usual names are tried first."""
    import ctypes.util

    searched = ctypes.util.find_library

    def find_library(name):
        usual = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}.get(name)
        try:
            ctypes.CDLL(usual)
            return usual
        except (OSError, TypeError):  # TypeError: not one of the two
            return searched(name)

    ctypes.util.find_library = find_library
    try:
        import pyseccomp
    finally:
        ctypes.util.find_library = searched
    return pyseccomp


def _landlock(libc, home):
    """(ABI applied, a note when none was): writes only under `home` and to DEVICES, no TCP, scoped
    abstract sockets and signals, as far as the kernel's Landlock ABI goes."""
    calls = LANDLOCK_CALLS.get(platform.machine())
    if calls is None:
        return 0, f"no Landlock on {platform.machine()} here"
    create, add_rule, restrict = (ctypes.c_long(n) for n in calls)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))  # the ABI version
    if abi < 1:
        return 0, f"the kernel offers no Landlock ({os.strerror(ctypes.get_errno())})"
    writes = WRITES | (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    fields = [writes] + ([TCP_BIND_CONNECT] if abi >= 4 else []) + ([SCOPED] if abi >= 6 else [])
    attr = struct.pack(f"={len(fields)}Q", *fields)
    ruleset = libc.syscall(create, ctypes.create_string_buffer(attr, len(attr)), ctypes.c_size_t(len(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise _os_error("landlock_create_ruleset")
    try:
        places = ([(home, writes)] if home and os.path.isdir(home) else []) + [
            (device, WRITE_FILE | (TRUNCATE if abi >= 3 else 0)) for device in DEVICES]
        for path, allowed in places:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = struct.pack("=Qi", allowed, fd)
                if libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(1),
                                ctypes.create_string_buffer(rule, len(rule)), ctypes.c_uint32(0)):
                    raise _os_error(f"landlock_add_rule {path}")
            finally:
                os.close(fd)
        flags = RESTRICT_ALL_THREADS if abi >= 8 else 0
        if libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(flags)):
            raise _os_error("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi, ""


def _os_error(what):
    code = ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def _explain(error):
    """What went wrong, and the fix."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, ImportError):
        return (f"pyseccomp is not installed ({text}). Fix: install it in the grader's environment: `pip install "
                f"pyseccomp` at the version requirements-instructors.txt pins (`make setup` does)")
    if "libseccomp" in str(error):
        return f"libseccomp is missing ({text}). Fix: `apt-get install libseccomp2`"
    return (f"the kernel or the container refused the filter ({text}). Fix: grade where seccomp filters are "
            f"allowed (Docker's default profile allows them)")


def status():
    """What confines this process, as the kernel shows it: the seccomp mode of every thread, no new
    privileges, the Landlock ABI applied (0: none, with the note why), and whether sockets are refused."""
    modes, nnp = set(), set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        modes.add(fields.get("Seccomp", "?").strip())
        nnp.add(fields.get("NoNewPrivs", "?").strip())
    refused = []
    for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_UNIX, socket.SOCK_STREAM)):
        try:
            socket.socket(family, kind).close()
        except PermissionError:
            refused.append(True)
        except OSError:
            refused.append(False)
        else:
            refused.append(False)
    return {"seccomp": modes == {"2"}, "threads": len(os.listdir("/proc/self/task")), "no_new_privs": nnp == {"1"},
            "sockets_refused": all(refused), "landlock": _applied["landlock"],
            "landlock_note": _applied["landlock_note"], "error": _applied["error"], "uid": os.getuid()}


def missing(found):
    """Why the status `found` (a child's) is not a confined child's, or None when it is."""
    if not isinstance(found, dict):
        return "the child did not say how it is confined"
    if found.get("error"):
        return str(found["error"])
    if not found.get("seccomp"):
        return "the seccomp filter is not active on every thread"
    if not found.get("no_new_privs"):
        return "no_new_privs is not set on every thread"
    if not found.get("sockets_refused"):
        return "the child can still open sockets"
    return None


if __name__ == "__main__":
    confine()
    json.dump(status(), sys.stdout)
