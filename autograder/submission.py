"""A student's tree as the grader takes it in: where its graded files are, a working folder with
the provided files and the student's graded files on top, and the reference's modules.

The graded files must be regular files of the submission: a symbolic link, a hard link to a file
outside the submission, a device, a FIFO or a file of more than MAX_FILE_BYTES is refused with a
message naming it (`SubmissionError`), and nothing is ever read through a link. The working
folder is readable by the child's unprivileged uid and writable by no one but the grader.
"""

import functools
import os
import shutil
import stat
import tempfile
from pathlib import Path

from autograder import ROOT
from autograder.child.compare import CheckFailure
from autograder.child.submission import GRADED_FILES, PROVIDED_FILES, Submission, load_module  # noqa: F401

REFERENCE_TREE = ROOT / "solution"
PROVIDED_TREE = ROOT / "assignment"
MAX_FILE_BYTES = {".py": 512 * 1024, ".ipynb": 8 * 2**20}  # a student's file is a few KB; notebooks hold outputs


class SubmissionError(CheckFailure):
    """A graded file the grader refuses to read; the message names it and says why."""


def locate_tree(folder):
    """The folder under `folder` that holds the graded files: `folder` itself when any is at its top,
    else the shallowest folder holding one (a repository or zip with a top folder, as uploaded).
    Symbolic links are not followed."""
    folder = Path(folder)
    if any(os.path.lexists(folder / name) for name in GRADED_FILES):
        return folder
    candidates = []
    for path, dirs, files in os.walk(folder):  # os.walk does not follow links to folders
        dirs[:] = [d for d in dirs if d not in ("__MACOSX", ".venv", ".git")]
        if any(name in files for name in GRADED_FILES):
            candidates.append(Path(path))
    return min(candidates, key=lambda p: len(p.parts)) if candidates else folder


def _links_inside(tree, inode):
    """How many names under `tree` point to `inode` (device, inode number)."""
    count = 0
    for path, _, files in os.walk(tree):
        for name in files:
            try:
                info = os.lstat(os.path.join(path, name))
            except OSError:
                continue
            count += (info.st_dev, info.st_ino) == inode
    return count


def read_graded_file(tree, filename):
    """The bytes of `<tree>/<filename>`, or None when it is absent; SubmissionError when it is not a
    regular file of the submission. Opened without following links."""
    path = Path(tree) / filename
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise SubmissionError(f"{filename} is a symbolic link (to {os.readlink(path)!r}); submit the file itself")
    if not stat.S_ISREG(info.st_mode):
        raise SubmissionError(f"{filename} is not a regular file (a folder, device or FIFO); submit the file itself")
    if info.st_nlink > 1 and _links_inside(tree, (info.st_dev, info.st_ino)) < info.st_nlink:
        raise SubmissionError(f"{filename} is a hard link to a file outside your submission; submit a copy of the file")
    limit = MAX_FILE_BYTES.get(Path(filename).suffix, 512 * 1024)
    if info.st_size > limit:
        raise SubmissionError(f"{filename} is {info.st_size:,} bytes; a graded file may hold at most {limit:,}")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise SubmissionError(f"{filename} changed while it was read; grade again")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise SubmissionError(f"{filename} is larger than {limit:,} bytes")
    return data


def refused_files(tree):
    """{filename: why} for the graded files of `tree` the grader refuses to read."""
    refused = {}
    for filename in GRADED_FILES:
        try:
            read_graded_file(tree, filename)
        except (SubmissionError, OSError) as error:
            refused[filename] = str(error)
    return refused


def prepare_workdir(tree, files=None, provided_tree=PROVIDED_TREE, reader_gid=None):
    """A new folder with the provided files of the homework and the graded files of `tree` on top
    (`files`: only those; default all). A refused file is left out (its tests say why). Only the
    grader can write it; only the grader and, with `reader_gid` (the group of the child's own uid),
    that child can read it: not a classmate's child graded at the same time."""
    workdir = Path(tempfile.mkdtemp(prefix="hw2-grading-"))
    copies = []
    for path in Path(provided_tree).iterdir():
        if path.is_file() and path.name not in GRADED_FILES:
            shutil.copyfile(path, workdir / path.name)
            copies.append(workdir / path.name)
    for filename in GRADED_FILES if files is None else files:
        try:
            data = read_graded_file(tree, filename)
        except (SubmissionError, OSError):
            data = None
        if data is not None:
            (workdir / filename).write_bytes(data)
            copies.append(workdir / filename)
    for path in [workdir, *copies]:
        if reader_gid is not None:
            os.chown(path, os.geteuid(), reader_gid)
        os.chmod(path, (0o750 if path == workdir else 0o640) if reader_gid is not None else
                 (0o700 if path == workdir else 0o600))
    return workdir


@functools.lru_cache(maxsize=None)
def load_reference(filename):
    """The reference's module `filename`, loaded once in the grading process (never in the child)."""
    return load_module(REFERENCE_TREE, filename)


class LocalSubmission(Submission):
    """A tree whose probes run in this process (the instructor's tests and calibration): the
    provided files with the tree's graded files on top, in a working folder, and the reference."""

    def __init__(self, tree):
        self.workdir_owned = prepare_workdir(tree)
        super().__init__(self.workdir_owned, shown_as=tree)

    reference = staticmethod(load_reference)

    def run_with_standins(self, probe, quiet=True, **inputs):
        from autograder import standins

        return self.run(probe, standins=str(standins.path()), **inputs)

    def cleanup(self):
        shutil.rmtree(self.workdir_owned, ignore_errors=True)
