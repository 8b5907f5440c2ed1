"""Clean shutdown of ``ryu-manager`` under eventlet on SIGINT/SIGTERM."""
from __future__ import annotations

import os
import signal

import greenlet
from eventlet.hubs import trampoline

from .runtime import hub


def install_clean_exit(logger) -> None:
    """Make SIGINT/SIGTERM end ``ryu-manager`` through its own ``finally: app_mgr.close()``.

    Under eventlet a plain Ctrl-C lands in the hub's greenlet and ryu-manager keeps running. Work
    started from a signal handler is not seen either: the hub's epoll is retried after EINTR with
    its old timeout (PEP 475). So the handler only writes to a pipe the hub polls; a greenthread
    reading it throws SystemExit into the main greenlet, which is blocked in ``hub.joinall``.
    """
    main = greenlet.getcurrent()
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)

    def waiter() -> None:
        trampoline(rfd, read=True)
        signum = os.read(rfd, 1)[0]
        logger.info("signal %d: shutting down", signum)
        main.throw(SystemExit(0))

    def on_signal(signum, _frame) -> None:
        try:
            os.write(wfd, bytes((signum,)))
        except BlockingIOError:
            pass  # a shutdown is already pending

    hub.spawn(waiter)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
