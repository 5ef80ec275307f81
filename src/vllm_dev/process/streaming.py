"""Running a command while handing its output, line by line, to a consumer as it appears.

The build's progress display needs ninja's status lines the moment ninja prints them, not after
cmake exits. Two transports:

* a pipe (stdout and stderr merged, in the order the child wrote them): ninja then prints one
  ``[N/M] description`` line per *finished* step;
* a pseudo-terminal (POSIX only), used for the live progress bar: ninja believes it talks to a
  terminal and also prints a status line when a step *starts*, which is the only way to learn
  which files are being compiled right now. Ninja redraws its status with ``\\r`` and
  ``ESC[K``; both are treated as line ends here, so consumers see plain lines either way.

The child runs in a session of its own (see :mod:`vllm_dev.process.interrupts`), so
Ctrl-C stops the whole compile tree, exactly as for :meth:`SubprocessRunner.run`.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping, Sequence

from vllm_dev.process.interrupts import signal_for, stop_session

# Cursor/erase sequences a terminal-mode ninja writes around its status line (colour codes in
# compiler diagnostics are kept: the consumer decides how to show them).
_ERASE_RE = re.compile(r"\x1b\[K")
# What ends a line: a newline or carriage return, and ``ESC[K`` after a ninja status line.
_END_RE = re.compile(r"\r\n|\r|\n|\x1b\[K")
# A ninja status line (``[N/M...] ``): a terminal-mode ninja writes ``\r[N/M] desc ESC[K`` and
# nothing more until its next event, which may be minutes away. ``ESC[K`` ends a line only
# here: gcc's coloured diagnostics put ``ESC[K`` after every colour change, mid-line.
_STATUS_START_RE = re.compile(r"\[\d+/\d+[^\]\n]*\] ")

# Wide enough that ninja never shortens a description with "..." in terminal mode.
_PTY_COLUMNS = 1000


class LineSplitter:
    """Turns chunks of bytes into complete lines as soon as they are complete.

    ``\\r`` and ``\\n`` end a line, and so does ``ESC[K`` after a ninja status line (see
    _STATUS_START_RE), so a status line is handed on the moment ninja writes it."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decoder.decode(data)
        start = 0
        for end in _END_RE.finditer(text):
            if end.group() == "\x1b[K" and not _STATUS_START_RE.match(text, start):
                continue  # an erase inside a coloured message: not the end of it
            self._emit(text[start:end.start()])
            start = end.end()
        self._pending = text[start:]

    def close(self) -> None:
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if text:
            self._emit(text)

    def _emit(self, part: str) -> None:
        line = _ERASE_RE.sub("", part)
        if line.strip():
            self._on_line(line)


def _open_pty() -> tuple[int, int]:
    """A pty pair with no ``\\n`` -> ``\\r\\n`` translation and a very wide window."""
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, _PTY_COLUMNS, 0, 0))
    return master, slave


def run_streaming(
    args: Sequence[str],
    *,
    on_line: Callable[[str], None],
    cwd: os.PathLike[str] | str | None = None,
    env: Mapping[str, str] | None = None,
    pseudo_terminal: bool = False,
) -> int:
    """Run ``args``, calling ``on_line`` for every line of its output; returns the exit code."""
    use_pty = pseudo_terminal and os.name == "posix"
    splitter = LineSplitter(on_line)
    slave = -1
    if use_pty:
        try:
            reader, slave = _open_pty()
        except OSError:
            use_pty = False
    if not use_pty:
        read_end, write_end = os.pipe()
        reader, slave = read_end, write_end
    try:
        proc = subprocess.Popen(
            list(args), cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, start_new_session=True,
        )
    except BaseException:
        os.close(reader)
        os.close(slave)
        raise
    os.close(slave)  # the child holds the only write end: EOF (or EIO on a pty) when it is done
    try:
        while True:
            try:
                data = os.read(reader, 65536)
            except OSError:  # a pty whose last writer closed reports EIO instead of EOF
                break
            if not data:
                break
            splitter.feed(data)
        splitter.close()
        return proc.wait()
    except BaseException as exc:  # KeyboardInterrupt, Terminated: stop the whole tree
        stop_session(proc, signal_for(exc))
        raise
    finally:
        os.close(reader)
