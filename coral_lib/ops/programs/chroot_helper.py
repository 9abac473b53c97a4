"""Runs as the app's uid in a fresh interpreter (-I -S: no site, no environment). argv:
pid, cwd ('' = the app process's own), command... Its own environment is the request's
extra variables, laid over the app process's. Everything is imported before chroot: the
app's filesystem has no Python."""

import ctypes
import os
import sys
import warnings  # noqa: F401 - loaded before chroot: os.execvpe imports it lazily

pid, cwd, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
try:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    env.update(os.environb)
    os.chdir(f"/proc/{pid}/cwd")
    os.chroot(f"/proc/{pid}/root")
    if cwd:
        os.chdir(cwd)
    ctypes.CDLL(None, use_errno=True).prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
except Exception as exc:
    sys.stderr.write(f"coral-chroot: cannot enter the container of pid {pid}: {exc}\n")
    sys.exit(126)
try:
    os.execvpe(argv[0], argv, env)
except Exception as exc:
    why = getattr(exc, "strerror", None) or exc
    sys.stderr.write(f"coral-chroot: cannot run {argv[0]!r}: {why}\n")
    sys.exit(127)
