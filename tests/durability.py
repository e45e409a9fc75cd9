"""What a crash would leave of a spool: syncs and renames recorded as they
happen, in this process, below the code under test.

:class:`DurabilityRecorder` wraps the calls that make data durable --
syncfs(2) through the disk module's libc handle, ``os.fsync`` -- and
``os.rename``/``os.replace``, and keeps the model a power cut would honour:
a directory entry survives once its directory, or the whole file system,
was synced after it was made; a file's bytes once the file, or the file
system, was synced after they were written.  Nothing else counts: bytes
written and names made but never synced are lost.
"""

import ctypes
import os
from pathlib import Path

from smtplatrine import disk


class DurabilityRecorder:
    """Records syncs and renames under *root* for *testcase* (restored by
    its cleanups).  ``durable(path)`` is what a crash now would leave at
    *path* (bytes, or None); ``renames`` the renames under *root* as
    ``(source, target, source bytes, target existed)``; ``log`` every
    sync and rename in order.  ``fail_syncs`` makes syncs fail with EIO."""

    def __init__(self, testcase, root):
        self.root = Path(root).absolute()
        self.device = os.stat(self.root).st_dev
        self.log = []
        self.renames = []
        self.fail_syncs = False
        self._entries = {}  # directory -> {name: inode}, as a crash would leave them
        self._data = {}     # inode -> bytes, as a crash would leave them
        self._commit(*self._snapshot())  # what exists now (the spool's directories) survives
        libc = disk._libc
        recorder = self

        class RecordingLibc:
            """The disk module's libc, its syncfs recorded."""

            def __getattr__(self, name):
                return getattr(libc, name)

            def syncfs(self, fd):
                if recorder.fail_syncs:
                    ctypes.set_errno(5)
                    return -1
                # What was written before the call is durable once it returns.
                snapshot = recorder._snapshot()
                result = libc.syncfs(fd)
                if result == 0 and os.fstat(fd).st_dev == recorder.device:
                    recorder._commit(*snapshot)
                    recorder.log.append(("syncfs",))
                return result

        real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

        def fsync(fd):
            status = os.fstat(fd)
            path = Path(os.readlink(f"/proc/self/fd/{fd}"))
            contents = None if path.is_dir() else os.pread(fd, status.st_size, 0)
            entries = self._listing(path) if path.is_dir() else None
            real_fsync(fd)
            if status.st_dev != self.device:
                return
            if entries is not None:
                self._entries[path] = entries
                self.log.append(("fsync directory", path))
            else:
                self._data[status.st_ino] = contents
                self.log.append(("fsync", path))

        def renamer(real):
            def rename(source, target, **kw):
                source, target = Path(source).absolute(), Path(target).absolute()
                inside = self.root in source.parents
                before = (source.read_bytes() if inside and source.is_file() else None,
                          target.exists())
                real(source, target, **kw)
                if inside:
                    self.renames.append((source, target, *before))
                    self.log.append(("rename", source, target))
            return rename

        testcase.patch(disk, "_libc", RecordingLibc())
        testcase.patch(os, "fsync", fsync)
        testcase.patch(os, "rename", renamer(real_rename))
        testcase.patch(os, "replace", renamer(real_replace))

    def _snapshot(self):
        """({directory: {name: inode}}, {inode: bytes}) of the spool now."""
        entries, data = {}, {}
        for directory, _, files in os.walk(self.root):
            directory = Path(directory)
            entries[directory] = self._listing(directory)
            for name in files:
                try:
                    fd = os.open(directory / name, os.O_RDONLY)
                except FileNotFoundError:  # renamed or removed meanwhile
                    continue
                try:
                    status = os.fstat(fd)
                    data[status.st_ino] = os.pread(fd, status.st_size, 0)
                finally:
                    os.close(fd)
        return entries, data

    def _commit(self, entries, data):
        self._entries.update(entries)
        self._data.update(data)

    @staticmethod
    def _listing(directory):
        return {entry.name: entry.inode() for entry in os.scandir(directory)}

    def durable(self, path):
        """The bytes a crash now would leave at *path*, or None."""
        path = Path(path).absolute()
        for directory in (path, *path.parents):
            if directory == self.root:
                break
            if directory.name not in self._entries.get(directory.parent, {}):
                return None
        return self._data.get(self._entries[path.parent][path.name])
