"""A private PostgreSQL server run from the system's PostgreSQL binaries.

Two users: the embedded default (``DATABASE_URL`` unset: a server under ``TRADEBOT_STATE_DIR/postgres``,
started on demand and left running for the next cron run) and the test suite (a throwaway server per
session). ``initdb`` and ``postgres`` refuse to run as root, so as root every server command runs as the
``postgres`` system user through ``runuser`` and the data directory belongs to that user.

The server listens on 127.0.0.1 only, on a port chosen when the cluster is created and kept in its
``postgresql.conf``; authentication is ``trust`` for loopback, which is why it binds nowhere else.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tradebot.errors import StorageError

DB_NAME = "tradebot"


def find_bindir() -> Path | None:
    """Directory holding ``initdb``/``pg_ctl``: ``TRADEBOT_PG_BINDIR``, Debian's newest
    ``/usr/lib/postgresql/N/bin``, then ``PATH``."""
    explicit = os.environ.get("TRADEBOT_PG_BINDIR")
    candidates: list[Path] = [Path(explicit)] if explicit else []

    def version(p: Path) -> int:
        m = re.search(r"/(\d+)/bin$", str(p))
        return int(m.group(1)) if m else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    return None


def install_postgres() -> Path:
    """Install Debian's ``postgresql`` package (root only) and return its binary directory."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StorageError("PostgreSQL server binaries not found; install PostgreSQL (e.g. `sudo apt-get install postgresql`) or set DATABASE_URL")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise StorageError(f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-300:]}")
    bindir = find_bindir()
    if bindir is None:
        raise StorageError("postgresql was installed but initdb was not found under /usr/lib/postgresql")
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """One private cluster in ``base`` (``base/data``, ``base/postgres.log``)."""

    def __init__(self, base: Path, *, bindir: Path | None = None, fast_unsafe: bool = False) -> None:
        self.base = base
        self.data = base / "data"
        self.log = base / "postgres.log"
        self._bindir = bindir
        # Tests trade durability for speed; the embedded default keeps fsync on (it holds a trade history).
        self.fast_unsafe = fast_unsafe

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
            if self._bindir is None:
                raise StorageError("PostgreSQL server binaries not found; install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL to a server you run")
        return self._bindir

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def _run(self, args: list[str], what: str) -> None:
        result = subprocess.run(self._as_owner(args), capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise StorageError(f"{what} failed: {detail[-1] if detail else f'exit code {result.returncode}'} (log: {self.log})")

    @property
    def port(self) -> int:
        conf = (self.data / "postgresql.conf").read_text() if self._readable_conf() else ""
        m = re.search(r"^port\s*=\s*(\d+)", conf, re.M)
        if not m:
            raise StorageError(f"no port configured in {self.data / 'postgresql.conf'}")
        return int(m.group(1))

    def _readable_conf(self) -> bool:
        try:
            return (self.data / "postgresql.conf").is_file()
        except PermissionError:
            return False

    def url(self, dbname: str = DB_NAME) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}?connect_timeout=5"

    def initialized(self) -> bool:
        return self._readable_conf()

    def init(self) -> None:
        """Create the cluster (``initdb``) with its port and loopback-only settings."""
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._check_traversable()
            shutil.chown(self.base, "postgres", "postgres")
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        settings = [
            f"port = {free_port()}",
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 50",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        conf = self.data / "postgresql.conf"
        # Appending as root keeps ownership (postgres) of the existing file.
        with conf.open("a") as f:
            f.write("\n# tradebot\n" + "\n".join(settings) + "\n")

    def _check_traversable(self) -> None:
        # The postgres user must be able to reach base: every parent needs o+x.
        for parent in [self.base, *self.base.parents]:
            mode = parent.stat().st_mode
            if parent != self.base and not mode & 0o001:
                raise StorageError(f"{parent} is not accessible to the postgres user that runs the embedded server; set TRADEBOT_STATE_DIR to a directory outside it (e.g. /var/lib/tradebot)")

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = subprocess.run(self._as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]),
                                capture_output=True, text=True)
        return result.returncode == 0

    def start(self) -> None:
        """Start the server (creating the cluster and the ``tradebot`` database when needed)."""
        if not self.initialized():
            self.init()
        if not self.running():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                       "start"], "starting the embedded PostgreSQL")
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
                    if not exists:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise StorageError(f"the embedded PostgreSQL on port {self.port} does not accept connections (log: {self.log})") from None
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], "stopping the embedded PostgreSQL")
