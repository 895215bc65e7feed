"""A private PostgreSQL server run from the system's PostgreSQL binaries.

Two users: the embedded default (``DATABASE_URL`` unset: a server under ``TRADEBOT_STATE_DIR/postgres``,
started on demand and left running for the next cron run) and the test suite (a throwaway server per
session). ``initdb`` and ``postgres`` refuse to run as root, so as root every server command runs as the
``postgres`` system user through ``runuser`` and the cluster's files belong to that user.

Who can connect (layout 2, this version):

* **No TCP at all** (``listen_addresses = ''``): nothing on the box can reach the server over the network.
* **One unix socket, in ``<base>/sock``, a directory of mode 0700** owned by the server's user: another local
  user cannot even reach the socket. (As root, root reaches it because root bypasses file permissions.)
* **Peer authentication** with an ident map: the kernel tells the server which unix user is connecting, and
  only the user who created the cluster is mapped, to two roles: ``tradebot`` (what the bot uses: a plain
  login role, not a superuser, owner of the ``tradebot`` database and nothing else) and ``postgres`` (the
  superuser, used only to create that role and database). No ``trust``, no passwords, no replication.

Why sockets and peer rather than a password over TCP: there is no secret to generate, store, leak or rotate,
and two independent barriers (directory permissions, then the kernel-verified peer identity) each refuse
another user on their own.

Clusters made by earlier versions (TCP on 127.0.0.1, ``trust`` for everyone, the bot as superuser) are
upgraded by the next start: the files are rewritten and the server reloaded at once (so the old trust lines
stop working), then restarted in *smart* mode (it waits for connected cycles to finish) to drop TCP and open
the socket; the bot's role is created and given the database and its tables. One notice line says so.

Starting, creating and upgrading happen under an exclusive ``flock`` on ``<base>/start.lock``: processes
started together (several cron lines, five ``init-db``) wait for the first one instead of racing ``initdb``
or ``pg_ctl start``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tradebot.errors import StorageError
from tradebot.infra.fsutil import make_private_dirs

DB_NAME = "tradebot"
BOT_ROLE = "tradebot"  # the role the bot connects as: LOGIN, not a superuser, owns DB_NAME only
SUPERUSER = "postgres"
SOCKET_PORT = 5432  # only names the socket file (.s.PGSQL.5432): nothing listens on TCP
LAYOUT_FILE = "tradebot.conf"  # in the data directory; its presence marks layout 2 (socket only, peer)
IDENT_MAP = "tradebot"
# sun_path holds 108 bytes with the terminating NUL; PostgreSQL appends "/.s.PGSQL.5432".
MAX_SOCKET_DIR = 107 - len(f"/.s.PGSQL.{SOCKET_PORT}")

log = logging.getLogger(__name__)
notice = logging.getLogger("tradebot.notice")


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


def runuser() -> str:
    """util-linux's ``runuser``: it lives in /usr/sbin, which cron's PATH (/usr/bin:/bin) does not hold."""
    for candidate in (shutil.which("runuser"), "/usr/sbin/runuser", "/sbin/runuser"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise StorageError("runuser (util-linux) was not found; as root tradebot needs it to run the embedded "
                       "PostgreSQL as the postgres user: install util-linux, or set DATABASE_URL")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (tests use it for unreachable servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def socket_url(socket_dir: Path, user: str, dbname: str, port: int = SOCKET_PORT) -> str:
    """A libpq URL for a unix socket directory: the directory is the (percent-encoded) host, the port
    names the socket file. Explicit, so PGHOST/PGPORT in the environment cannot redirect it."""
    return f"postgresql://{user}@{quote(str(socket_dir), safe='')}:{port}/{dbname}?connect_timeout=5"


@dataclass(frozen=True)
class Exposure:
    """One way the embedded cluster can be reached by someone other than the bot's unix user."""

    problem: str
    fix: str


def _hba(peer_map: str) -> str:
    return (
        "# tradebot embedded PostgreSQL (layout 2). Managed by tradebot; see tradebot/infra/localpg.py.\n"
        "# No TCP (listen_addresses = ''), one unix socket in a 0700 directory, peer authentication:\n"
        f"# only the unix users in pg_ident.conf map '{peer_map}' get in, as the roles listed there.\n"
        "# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
        f"local   all       all            peer map={peer_map}\n"
    )


class LocalPostgres:
    """One private cluster in ``base``: ``data/`` (PGDATA), ``sock/`` (the socket), ``postgres.log`` and
    ``start.lock``."""

    def __init__(self, base: Path, *, bindir: Path | None = None, fast_unsafe: bool = False) -> None:
        self.base = base
        self.data = base / "data"
        self.sockets = base / "sock"
        self.log = base / "postgres.log"
        self._bindir = bindir
        # Tests trade durability for speed; the embedded default keeps fsync on (it holds a trade history).
        self.fast_unsafe = fast_unsafe

    # -- where and who -----------------------------------------------------------------------------------------
    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
            if self._bindir is None:
                raise StorageError("PostgreSQL server binaries not found; install PostgreSQL (e.g. `apt-get install postgresql`) or set DATABASE_URL to a server you run")
        return self._bindir

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _as_owner(self, args: list[str]) -> list[str]:
        if self._as_root():
            return [runuser(), "-u", SUPERUSER, "--", *args]
        return args

    @staticmethod
    def client_user() -> str:
        """The unix user this process runs as: the one (and only) user the ident map lets in."""
        return pwd.getpwuid(os.geteuid()).pw_name

    def url(self, dbname: str = DB_NAME) -> str:
        """What the bot connects with: role ``tradebot`` over the private socket."""
        return socket_url(self.sockets, BOT_ROLE, dbname)

    def admin_url(self, dbname: str = "postgres") -> str:
        """The superuser over the same socket (creating the bot's role and database; the test suite)."""
        return socket_url(self.sockets, SUPERUSER, dbname)

    def initialized(self) -> bool:
        try:
            return (self.data / "postgresql.conf").is_file()
        except PermissionError:
            return False

    def layout_current(self) -> bool:
        """Whether the cluster has this version's access rules (socket only, peer) — see the module doc."""
        try:
            return (self.data / LAYOUT_FILE).is_file()
        except PermissionError:
            return False

    # -- commands --------------------------------------------------------------------------------------------
    def _run(self, args: list[str], what: str) -> None:
        result = subprocess.run(self._as_owner(args), capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise StorageError(f"{what} failed: {detail[-1] if detail else f'exit code {result.returncode}'} (log: {self.log})")

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = subprocess.run(self._as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data), "status"]),
                                capture_output=True, text=True)
        return result.returncode == 0

    @contextmanager
    def _start_lock(self) -> Iterator[None]:
        """Serialize creating, upgrading and starting the cluster across processes."""
        make_private_dirs(self.base.parent)  # the state directory: 0700 when tradebot creates it
        make_private_dirs(self.base)
        fd = os.open(self.base / "start.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def start(self) -> str:
        """Create (first use), upgrade (older layout) and start the server, and make sure the bot's role and
        database exist. Returns :meth:`url`. Cheap when the server already runs: one connection attempt."""
        if self.layout_current() and self._bot_connects():
            return self.url()
        with self._start_lock():
            if not self.initialized():
                self.init()
            elif not self.layout_current():
                self._upgrade()
            if not self.running():
                self._write_settings()
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                           "start"], "starting the embedded PostgreSQL")
            self._ensure_role_and_database()
        return self.url()

    def stop(self, mode: str = "fast") -> None:
        with self._start_lock():
            if self.running():
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
                          "stopping the embedded PostgreSQL")

    # -- creating and upgrading ---------------------------------------------------------------------------------
    def init(self) -> None:
        """Create the cluster (``initdb``) with this version's access rules. Call under the start lock."""
        if len(str(self.sockets)) > MAX_SOCKET_DIR:
            raise StorageError(f"the state directory path is too long for PostgreSQL's unix socket ({self.sockets} "
                               f"has {len(str(self.sockets))} characters, at most {MAX_SOCKET_DIR}); set "
                               "TRADEBOT_STATE_DIR to a shorter path")
        notice.info("creating the embedded PostgreSQL in %s (TRADEBOT_STATE_DIR decides where)", self.base)
        make_private_dirs(self.base)
        if self._as_root():
            self._let_server_user_in()
            shutil.chown(self.base, SUPERUSER, SUPERUSER)
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth-local=peer",
                   "--auth-host=reject", "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        self._write_layout()

    def _let_server_user_in(self) -> None:
        """As root the server runs as ``postgres``, which must traverse every parent of ``base``: a parent
        that only root may enter gets group ``postgres`` and g+x when it is ours (the state directory)."""
        for parent in self.base.parents:
            st = parent.stat()
            if st.st_mode & 0o001:
                continue
            gid = pwd.getpwnam(SUPERUSER).pw_gid
            if parent == self.base.parent and st.st_uid == 0 and st.st_gid in (0, gid):
                os.chown(parent, 0, gid)
                os.chmod(parent, stat.S_IMODE(st.st_mode) | 0o010)
            elif not (st.st_gid == gid and st.st_mode & 0o010):
                raise StorageError(f"{parent} is not accessible to the postgres user that runs the embedded server; "
                                   "set TRADEBOT_STATE_DIR to a directory outside it (e.g. /var/lib/tradebot)")

    def _write_owned(self, path: Path, text: str) -> None:
        """Replace a file of the cluster atomically, owned by the server's user, mode 0600."""
        tmp = path.with_name(f".{path.name}.tradebot.tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if self._as_root():
            shutil.chown(tmp, SUPERUSER, SUPERUSER)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def _write_layout(self) -> None:
        """Write this version's access rules (pg_hba.conf, pg_ident.conf) and settings."""
        self._write_owned(self.data / "pg_hba.conf", _hba(IDENT_MAP))
        self._write_owned(self.data / "pg_ident.conf",
                          "# MAPNAME  SYSTEM-USERNAME  PG-USERNAME (managed by tradebot)\n"
                          f"{IDENT_MAP}  {self.client_user()}  {BOT_ROLE}\n"
                          f"{IDENT_MAP}  {self.client_user()}  {SUPERUSER}\n")
        conf = self.data / "postgresql.conf"
        if f"include_if_exists = '{LAYOUT_FILE}'" not in conf.read_text():
            # Appended last, so its values win over anything earlier in postgresql.conf (an older layout's).
            with conf.open("a") as f:  # appending as root keeps the file's owner (postgres)
                f.write(f"\n# tradebot: access rules and settings (socket only, no TCP)\ninclude_if_exists = '{LAYOUT_FILE}'\n")
        self._write_settings()  # last: tradebot.conf's presence is what marks the cluster as upgraded

    def _settings_text(self) -> str:
        settings = [
            "listen_addresses = ''",
            f"port = {SOCKET_PORT}",
            f"unix_socket_directories = '{self.sockets}'",
            "unix_socket_permissions = 0700",
            "max_connections = 50",
        ]
        if self.fast_unsafe:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        return "# Managed by tradebot (layout 2).\n" + "\n".join(settings) + "\n"

    def _write_settings(self) -> None:
        """The socket directory and ``tradebot.conf``; rewritten before a start when they differ (a state
        directory that was moved or renamed keeps working)."""
        self.sockets.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.sockets, 0o700)
        if self._as_root():
            shutil.chown(self.sockets, SUPERUSER, SUPERUSER)
        path = self.data / LAYOUT_FILE
        if not path.is_file() or path.read_text() != self._settings_text():
            self._write_owned(path, self._settings_text())

    def _upgrade(self) -> None:
        """Bring a cluster created by an earlier tradebot (TCP, trust) to this layout. Under the start lock."""
        self._write_layout()
        os.chmod(self.base, 0o700)  # earlier versions left it 0755
        if self.running():
            # Reload first: the old trust lines stop working right now, for everyone. Then a smart restart
            # (waits for connected cycles to finish) drops TCP and opens the private socket.
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "reload"], "reloading the embedded PostgreSQL")
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-m", "smart", "-w",
                       "-t", "300", "restart"], "restarting the embedded PostgreSQL (clients still connected?)")
        notice.info("upgraded the embedded PostgreSQL in %s: unix socket only (no TCP), peer authentication, "
                    "no trust; the bot now connects as role %r (not a superuser)", self.base, BOT_ROLE)

    def _bot_connects(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=5):
                return True
        except psycopg.Error:
            return False

    def _ensure_role_and_database(self) -> None:
        """The bot's role and database, owned by it (created or handed over by the superuser, once)."""
        import psycopg

        from tradebot.store.db import queries

        if self._bot_connects():
            return
        q = queries("embedded")
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
                    if not conn.execute(q["role_exists"], {"role": BOT_ROLE}).fetchone():
                        conn.execute(q["create_role"])
                    conn.execute(q["harden_role"])
                    if not conn.execute(q["database_exists"], {"name": DB_NAME}).fetchone():
                        conn.execute(q["create_database"])
                    conn.execute(q["own_database"])
                    conn.execute(q["revoke_public"])
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise StorageError(f"the embedded PostgreSQL in {self.base} does not accept connections (log: {self.log})") from None
                time.sleep(0.2)
        # A database made by an earlier version holds tables owned by the superuser: hand them over.
        with psycopg.connect(self.admin_url(DB_NAME), autocommit=True) as conn:
            conn.execute(q["own_objects"])

    # -- inspection (doctor) ---------------------------------------------------------------------------------------
    def exposure(self) -> list[Exposure]:
        """Ways another local user could reach this cluster; empty when it is private. Reads the cluster's
        own files (this process owns them, or is root)."""
        found: list[Exposure] = []
        start = "run `tradebot local-db start` (it upgrades older clusters)"
        if not self.layout_current():
            return [Exposure("the cluster has an earlier version's access rules (TCP on 127.0.0.1, trust for every local user)", start)]
        try:
            hba = (self.data / "pg_hba.conf").read_text()
            # The include line stands for the included file: what follows it still overrides it.
            conf = (self.data / "postgresql.conf").read_text().replace(
                f"include_if_exists = '{LAYOUT_FILE}'", (self.data / LAYOUT_FILE).read_text())
            sock_mode = stat.S_IMODE(self.sockets.stat().st_mode)
        except OSError as e:
            return [Exposure(f"cannot read the cluster's configuration ({e.strerror or type(e).__name__})",
                             "run tradebot as the user (or root) that created the embedded PostgreSQL")]
        for n, line in enumerate(hba.splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if "trust" in words:
                found.append(Exposure(f"pg_hba.conf line {n} trusts every connection it matches ({' '.join(words)})",
                                      f"remove that line from {self.data / 'pg_hba.conf'} and run `tradebot local-db stop` then `start`"))
            elif words[0].startswith("host"):
                found.append(Exposure(f"pg_hba.conf line {n} accepts TCP connections ({' '.join(words)})",
                                      f"remove that line from {self.data / 'pg_hba.conf'}"))
        listen = _last_setting(conf, "listen_addresses")
        if listen not in (None, ""):
            found.append(Exposure(f"the server listens on TCP ({listen!r})",
                                  f"remove listen_addresses from {self.data / 'postgresql.conf'} and restart it"))
        if sock_mode & 0o077:
            found.append(Exposure(f"the socket directory {self.sockets} is open to other users ({stat.filemode(sock_mode | stat.S_IFDIR)})",
                                  f"chmod 700 {self.sockets}"))
        return found


def _last_setting(conf: str, name: str) -> str | None:
    """The value postgresql.conf ends up with for ``name`` (the last assignment wins)."""
    value = None
    for m in re.finditer(rf"^\s*{name}\s*=?\s*(?:'([^']*)'|(\S+))", conf, re.M):
        value = m.group(1) if m.group(1) is not None else m.group(2)
    return value
