"""An embedded PostgreSQL server kept in a data directory of our own.

Binaries come from the `pgserver` wheel when it is installed, else from a PostgreSQL found
on the machine (`pg_config --bindir`, the usual Debian/RPM/Homebrew paths). The server
listens on 127.0.0.1 at a port recorded in its `postmaster.pid`; a server left running by
a killed process is reused, not started twice. PostgreSQL refuses to run as root, so under
root the cluster belongs to a dedicated system user (`omniroute-pg`).
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

log = logging.getLogger("omniroute.embedded")

SYSTEM_USER = "omniroute-pg"


class EmbeddedUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl and postgres, or EmbeddedUnavailable."""
    candidates: list[Path] = []
    # Located without importing pgserver: its import has side effects we do not want.
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)]
    candidates += [Path("/opt/homebrew/bin"), Path("/usr/local/bin")]
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    raise EmbeddedUnavailable(
        "No PostgreSQL server binaries found: the `pgserver` wheel is not installed for this "
        "platform and no local PostgreSQL was found. Install PostgreSQL 14+ or point "
        "Omniroute at a server with OMNIROUTE_DATABASE_URL=postgresql://user@host:5432/db."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let the server's user reach `path`: add o+x (search, not read) to each parent."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir/pg`. `start()` returns a connection URL."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pg"
        self.bindir = find_bindir()
        self.port = port
        self.started_by_us = False
        self._as_user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._as_user = _ensure_system_user()

    def _run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / exe), *args]
        kwargs: dict = {}
        if self._as_user is not None:
            kwargs = {"user": self._as_user.pw_uid, "group": self._as_user.pw_gid, "extra_groups": []}
            # Again on every call, not only at init: a parent folder may have been tightened
            # since (pytest resets its per-user temporary root to 0700 on every run).
            _make_traversable(self.data_dir)
        # pg_ctl's forked server keeps inherited pipes open, so output goes to a file.
        with open(self.data_dir / f"{exe}.out", "w+") as out:
            if self._as_user is not None:
                os.chown(out.name, self._as_user.pw_uid, self._as_user.pw_gid)
            # A session of its own: Ctrl-C in the terminal must not reach the server directly;
            # `serve` stops it after the HTTP workers have drained.
            proc = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, start_new_session=True, **kwargs
            )
            out.seek(0)
            output = out.read()
        if proc.returncode != 0:
            raise EmbeddedUnavailable(f"{exe} failed ({proc.returncode}):\n{output}")
        return proc

    def _running_port(self) -> int | None:
        """Port of a live server on this data directory, from postmaster.pid."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return port

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_user is not None:
            _make_traversable(self.data_dir)
            _make_traversable(self.bindir.parent)
            os.chown(self.data_dir, self._as_user.pw_uid, self._as_user.pw_gid)

    def init(self) -> None:
        self._prepare_dir()
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres")
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# omniroute embedded defaults\n"
                "listen_addresses = '127.0.0.1'\n"
                "max_connections = 300\n"
                "shared_buffers = '1GB'\n"
                "work_mem = '32MB'\n"
                "maintenance_work_mem = '512MB'\n"
                "max_wal_size = '4GB'\n"
                "checkpoint_timeout = '15min'\n"
                "synchronous_commit = on\n"
                "fsync = on\n"
                "logging_collector = off\n"
            )

    def start(self) -> str:
        """Start (or reuse) the server and return its URL. Initializes the cluster if needed."""
        if not self.initialized:
            log.info("initializing embedded PostgreSQL in %s", self.pgdata)
            self.init()
        port = self._running_port()
        if port is None:
            port = self.port or _free_port()
            sockdir = self.pgdata
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                "60",
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                f"-p {port} -k {sockdir}",
                "start",
            )
            self.started_by_us = True
            log.info("embedded PostgreSQL started on port %d", port)
        else:
            log.info("embedded PostgreSQL already running on port %d", port)
        self.port = port
        return self.url()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends sessions and checkpoints; `immediate` is a crash
        (no checkpoint: the next start replays the WAL)."""
        if self._running_port() is not None:
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", mode, "stop")
            log.info("embedded PostgreSQL stopped (%s)", mode)


class EmbeddedStandby(EmbeddedPostgres):
    """A streaming replica of the server at 127.0.0.1:`primary_port`, cloned with
    `pg_basebackup -R` on first start (the primary must allow replication connections from
    127.0.0.1, as an embedded server does). For trying read scaling on one machine and for
    the tests that prove it; production replicas are the operator's."""

    def __init__(self, data_dir: Path, primary_port: int, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.primary_port = primary_port

    def init(self) -> None:
        self._prepare_dir()
        self._run(
            "pg_basebackup",
            *("-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
            *("--wal-method=stream", "--write-recovery-conf", "--checkpoint=fast"),
            timeout=600,
        )
