"""One run per workdir: WORKDIR/run.lock, held with an OS file lock (flock) for the life of the
run and naming its holder (host, pid, start time).

A second run on a held workdir stops at once with one line naming the holder. The OS drops
the lock when the holder's process ends in any way (SIGKILL included), so a lock left by a
dead run is free: the next run takes it over and says whose it was. Local filesystems only
(flock); a gs:// workdir is not locked.

    with hold(workdir, log):
        ...train...
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Callable

LOCK_FILE = 'run.lock'


class WorkdirBusy(Exception):
    """Another live run holds the workdir."""


class WorkdirUnwritable(Exception):
    """The workdir cannot be created or written (read-only filesystem, permission, full disk)."""
    one_line = True  # config.run prints it as `error: ...`


def _describe(holder: dict) -> str:
    since = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))
    return f'host {holder.get("host", "?")}, pid {holder.get("pid", "?")}, since {since}'


@contextlib.contextmanager
def hold(workdir: str, log: Callable = print):
    """Hold WORKDIR/run.lock for the block; WorkdirBusy when a live run holds it,
    WorkdirUnwritable when the lock file cannot be created."""
    if '://' in workdir:
        yield
        return
    import fcntl
    path = os.path.join(workdir, LOCK_FILE)
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise WorkdirUnwritable(f'workdir {workdir} cannot be written ({e.strerror}: {e.filename}): pass a --workdir '
                                f'on a writable filesystem') from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(f'workdir {workdir} is in use by another run ({_describe(_read(fd))}): wait for it to '
                              f'finish, stop it, or pass another --workdir') from None
        previous = _read(fd)
        if previous:  # its holder ended without releasing (killed): the OS freed the lock
            log(f'workdir {workdir}: taking over the lock of a run that is gone ({_describe(previous)})')
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({'host': socket.gethostname(), 'pid': os.getpid(), 'started': time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # released cleanly: an empty lock file
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b'{}')
    except ValueError:
        return {'host': '?', 'pid': '?'}
