"""Drive a program that reads a passphrase from its terminal (as `age` does) through a pty."""

import os
import pty
import select
import signal
import time


def run_on_tty(argv: list[str], answers: list[str], timeout: float = 60.0) -> tuple[int, str]:
    """Run `argv` on a new pseudo-terminal, typing one answer at each passphrase prompt.

    Returns (exit code, terminal transcript). A prompt with no answer left is never answered,
    so the child is killed at the timeout and the caller sees a failure, not a hang.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the program (its controlling tty is the pty)
        try:
            os.execv(argv[0], argv)  # noqa: S606 - argv is a fixed list, no shell
        finally:
            os._exit(127)
    answers = list(answers)
    transcript = bytearray()
    pending = bytearray()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal (it exited)
                break
            if not data:
                break
            transcript += data
            pending += data
            prompt = pending.rstrip()
            if answers and prompt.endswith(b":") and b"passphrase" in prompt.lower():
                os.write(fd, answers.pop(0).encode() + b"\r")
                pending.clear()
    finally:
        if timed_out:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = transcript.decode(errors="replace")
    assert not timed_out, f"{argv[0]} did not finish on the tty; transcript: {text!r}"
    return os.waitstatus_to_exitcode(status), text
