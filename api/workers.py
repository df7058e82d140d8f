"""`omniroute serve --workers N`: uvicorn's supervisor, with a listening socket per worker.

uvicorn's workers share one listening socket, and the worker that wakes first accepts every
connection waiting. A burst of new keep-alive connections (a client's pool starting up)
then lands unevenly: 27 of 32 on one worker in `bench.availability`, and that worker's
queue sets the tail (p99 25 ms against 15 ms at an even split). Here each worker listens on
a socket of its own, all bound to the same address with SO_REUSEPORT, and Linux spreads new
connections over them by a hash of their addresses.

The supervisor keeps every socket open, so connections that arrive for a worker being
replaced wait in its socket's queue for the replacement instead of being refused.
Everything else is uvicorn's `Multiprocess`: health checks, a dead worker replaced, SIGHUP
replacing each worker once its successor is ready, SIGTERM draining.
"""

from __future__ import annotations

import logging
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def spreads_connections() -> bool:
    """Whether SO_REUSEPORT spreads connections over the sockets sharing a port (Linux);
    elsewhere it may hand them all to one, and uvicorn's shared socket is used instead."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listener(config: Config) -> socket.socket:
    """A socket bound to the service's address, sharing it with the other workers' sockets."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        logger.error(exc)
        sys.exit(STARTUP_FAILURE)
    sock.set_inheritable(True)
    return sock


class Workers(Multiprocess):
    """`config.workers` processes, worker i always on socket i (its replacements too)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, sockets=[listener(config) for _ in range(config.workers)])

    def _spawn(self, idx: int) -> Process:
        process = Process(self.config, [self.sockets[idx]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._spawn(idx) for idx in range(self.processes_num)]

    # The two methods below are uvicorn 0.54's, but for the socket each new process gets.

    def restart_all(self) -> None:
        """SIGHUP: replace each worker, its successor serving before it is retired."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._spawn(idx)
            if not new_process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new_process.kill()
                new_process.join()
                if not self.should_exit.is_set():
                    logger.error(
                        f"New child process [{new_process.pid}] was not ready in time; "
                        f"keeping worker [{old_process.pid}] and aborting the restart."
                    )
                return
            old_process.terminate()
            old_process.join()
            self.processes[idx] = new_process

    def keep_subprocess_alive(self) -> None:
        """Replace a worker that died or stopped answering health checks."""
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: the app is broken, and every restart would fail.
                logger.error(f"Child process [{process.pid}] failed to start, stopping the parent process.")
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            self.processes[idx] = self._spawn(idx)
