"""Helper run by coral_lib/ops/tap.py as `python -I -S -c <this> NS_FD CHAN_FD`.

Runs in a fresh single-threaded interpreter: joins the network namespace NS_FD, creates
an AF_PACKET socket there and passes it back over the unix socket CHAN_FD ("OK" + the
fd), or sends "ERR <reason>". The agent's own threads never change namespace.
"""

import ctypes
import os
import socket
import sys

ns_fd, chan = int(sys.argv[1]), socket.socket(fileno=int(sys.argv[2]))
try:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ns_fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "setns: " + os.strerror(ctypes.get_errno()))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    socket.send_fds(chan, [b"OK"], [sock.fileno()])
except OSError as exc:
    chan.send(b"ERR " + str(exc).encode())
