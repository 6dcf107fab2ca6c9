"""Decoders for the batch tests, run in child processes (which find them by module and name)."""

import os
import signal
import time


def segfault(path, iso, noise, conn):
    """What LibRaw does on some malformed files."""
    os.kill(os.getpid(), signal.SIGSEGV)


def hang(path, iso, noise, conn):
    """A decoder stuck in a loop."""
    time.sleep(3600)


def crash_on_bad(path, iso, noise, conn):
    """Decode normally, but die on files whose name says 'crash'."""
    from camnet_cli.decoding import decode_child

    if "crash" in os.path.basename(path):
        os.kill(os.getpid(), signal.SIGSEGV)
    decode_child(path, iso, noise, conn)
