"""Compile a capture filter expression to classic BPF (through tcpdump) and attach it."""

from __future__ import annotations

import ctypes
import shutil
import socket
import struct
import subprocess

from coral_lib.ops import base

SO_ATTACH_FILTER = 26
MAX_EXPRESSION = 4096
MAX_INSTRUCTIONS = 4096  # BPF_MAXINSNS in the kernel

Program = list[tuple[int, int, int, int]]
_INSN = struct.Struct("=HBBI")  # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k;}


class FilterError(base.OperationError):
    """The capture filter expression could not be compiled."""


def compile_filter(expr: str, *, linktype: str = "EN10MB", snaplen: int = 262144) -> Program:
    """`tcpdump -ddd` the expression; an empty expression accepts every packet.

    snaplen goes into the program's accept value, so the kernel truncates for us.
    """
    _check_expression(expr)
    tcpdump = shutil.which("tcpdump") or shutil.which("tcpdump", path="/usr/sbin:/usr/bin")
    if tcpdump is None:
        raise FilterError("cannot compile capture filters: tcpdump is not installed "
                          "(Debian package 'tcpdump')")
    argv = [tcpdump, "-ddd", "-y", linktype, "-s", str(snaplen), "--", expr]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.strip().removeprefix("tcpdump: ") or f"exit {proc.returncode}"
        raise FilterError(f"invalid capture filter {expr!r}: {reason} "
                          "(expected pcap-filter syntax, e.g. 'tcp port 80')")
    return parse_ddd(proc.stdout, expr=expr)


def parse_ddd(text: str, *, expr: str = "") -> Program:
    """Parse `tcpdump -ddd` output: a count line, then 'code jt jf k' per instruction."""
    lines = text.split()
    try:
        count = int(lines[0])
        nums = [int(x) for x in lines[1:]]
    except (IndexError, ValueError) as exc:
        raise FilterError(f"unreadable tcpdump output for filter {expr!r}") from exc
    if len(nums) != 4 * count or not 0 < count <= MAX_INSTRUCTIONS:
        raise FilterError(f"filter {expr!r} compiled to {count} instructions, "
                          f"expected 1..{MAX_INSTRUCTIONS} complete instructions")
    return [tuple(nums[i:i + 4]) for i in range(0, len(nums), 4)]


def pack(program: Program) -> bytes:
    return b"".join(_INSN.pack(*insn) for insn in program)


def attach(sock: socket.socket, program: Program) -> None:
    """SO_ATTACH_FILTER with a struct sock_fprog {u16 len; struct sock_filter *filter;}."""
    code = pack(program)
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))  # native padding
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _check_expression(expr: str) -> None:
    if not isinstance(expr, str):
        raise FilterError(f"capture filter must be a string, got {type(expr).__name__}")
    if len(expr) > MAX_EXPRESSION or "\x00" in expr:
        raise FilterError(f"invalid capture filter {expr[:80]!r}: at most {MAX_EXPRESSION} "
                          "characters and no NUL bytes")
