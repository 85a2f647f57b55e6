"""PostgreSQL and Redis for the tests and for trying the shared backends: `make services`.

    python3 tools/services.py start    # install them if missing (Debian packages), start both
    python3 tools/services.py start --pg-port 55432 --redis-port 56379   # on ports of your choice
    python3 tools/services.py stop
    python3 tools/services.py status

Both run as private servers of this checkout, on loopback ports, with their data under
var/services/ (not the system's own PostgreSQL cluster or Redis): a PostgreSQL cluster made with
initdb (trust authentication, loopback only) and a Redis without persistence. The ports are the
ones asked for (--pg-port / --redis-port, else the environment's CDS_PG_PORT / CDS_REDIS_PORT,
so `make services CDS_PG_PORT=55432` works), else the ones used last time, else free ones chosen
at start; a server already running on another port than the one asked for is restarted on it,
and a port asked for that another program holds is refused with a clear message.
`start` writes var/services/services.env, which the tests read (tests/services.py):

    CDS_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/postgres   (admin; tests make their own databases)
    CDS_TEST_REDIS_URL=redis://127.0.0.1:PORT/0
    CDS_TEST_PG_BINDIR=/usr/lib/postgresql/NN/bin                          (for the tests' throwaway clusters)

and a database `cds` for trying the service by hand (printed by `start`).
`start` is idempotent (servers already running are kept); CI runs it on a fresh clone, so each CI
run has new, empty servers. PostgreSQL refuses to run as root: as root, its commands run as the
`postgres` user that Debian's package creates. Only the standard library is used here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / "var" / "services"
ENV_FILE = STATE / "services.env"
APT_PACKAGES = {"postgresql": "initdb", "redis-server": "redis-server"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: Debian's newest /usr/lib/postgresql/N/bin, else the PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    which = shutil.which("pg_ctl")
    return Path(which).resolve().parent if which else None


def _is_root() -> bool:
    return os.geteuid() == 0


class PostgresCluster:
    """A private PostgreSQL cluster in ``datadir`` listening on 127.0.0.1:``port`` only.

    Used by ``make services`` and, as throwaway clusters, by tests that stop a database on purpose.
    ``fast`` turns fsync off: for test clusters only (nothing there needs to survive a power loss).
    """

    def __init__(self, datadir: Path, port: int, *, bindir: Path | None = None, fast: bool = False):
        self.datadir = Path(datadir)
        self.port = port
        self.bindir = bindir or pg_bindir()
        if self.bindir is None:
            raise FileNotFoundError("PostgreSQL server programs (initdb, pg_ctl) not found: run `make services`")
        self.fast = fast
        self.rundir = self.datadir.parent / (self.datadir.name + "-run")  # socket and log
        self.logfile = self.rundir / "postgresql.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if _is_root():
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if _is_root():
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)
        path.chmod(0o700)

    def init(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self._own(self.datadir)
        self._own(self.rundir)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        self.init()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            f"-c unix_socket_directories={self.rundir}",
            "-c max_connections=200",
        ]
        if self.fast:
            options += ["-c fsync=off", "-c full_page_writes=off"]
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            "-o",
            " ".join(options),
            "-w",
            "start",
            check=False,
        )
        if result.returncode != 0:
            tail = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()} {tail}")

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop", check=False)

    def running(self) -> bool:
        if not (self.datadir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-tAc", sql
        )
        return result.stdout.strip()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.rmtree(self.rundir, ignore_errors=True)


class RedisServer:
    """A private Redis on 127.0.0.1:``port``, no persistence, daemonised with a pid file."""

    def __init__(self, directory: Path, port: int):
        self.dir = Path(directory)
        self.port = port
        self.pidfile = self.dir / "redis.pid"
        self.logfile = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Its own configuration only (no /etc/redis/redis.conf): loopback, no disk.
        subprocess.run(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pidfile),
                "--logfile",
                str(self.logfile),
                "--dir",
                str(self.dir),
            ],
            check=True,
            timeout=30,
        )
        deadline = time.time() + 10
        while not port_open(self.port):
            if time.time() > deadline:
                raise RuntimeError(f"Redis did not start; see {self.logfile}")
            time.sleep(0.05)

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            return pid
        return None

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, 15)
        deadline = time.time() + 10
        while self.pid() is not None and time.time() < deadline:
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# make services
# --------------------------------------------------------------------------------------------


def read_env(path: Path | None = None) -> dict[str, str]:
    path = path or ENV_FILE
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and re.fullmatch(r"[A-Z_]+", key.strip()):
                values[key.strip()] = value.strip()
    return values


def _port_of(url: str | None) -> int | None:
    match = re.search(r":(\d+)/", url or "")
    return int(match.group(1)) if match else None


def install() -> None:
    """Debian's postgresql and redis-server, when their programs are missing (needs root)."""
    missing = [
        package
        for package, program in APT_PACKAGES.items()
        if (pg_bindir() is None if program == "initdb" else shutil.which(program) is None)
    ]
    if not missing:
        return
    if not (_is_root() and shutil.which("apt-get")):
        sys.exit(
            f"services: {', '.join(missing)} not installed. Install them with "
            f"`sudo apt-get install {' '.join(missing)}` (Debian/Ubuntu), then run `make services` again."
        )
    print(f"services: installing {', '.join(missing)} from Debian's packages ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def pg_home() -> Path:
    """Where the cluster's files go: var/services/pg, or, as root, a folder under the system's
    temporary directory, since the server then runs as the `postgres` user, who may not be able to
    reach the checkout (a clone under a private folder)."""
    if not _is_root():
        return STATE
    digest = hashlib.sha1(str(REPO).encode()).hexdigest()[:10]
    home = Path(tempfile.gettempdir()) / f"calciphylaxis-cds-services-{digest}"
    home.mkdir(mode=0o755, exist_ok=True)
    home.chmod(0o755)
    return home


def servers(env: dict[str, str]) -> tuple[PostgresCluster, RedisServer]:
    pg_port = _port_of(env.get("CDS_TEST_DATABASE_URL")) or free_port()
    redis_port = _port_of(env.get("CDS_TEST_REDIS_URL")) or free_port()
    pg_dir = Path(env["CDS_TEST_PG_DATA"]) if env.get("CDS_TEST_PG_DATA") else pg_home() / "pg"
    return PostgresCluster(pg_dir, pg_port), RedisServer(STATE / "redis", redis_port)


PORT_VARIABLES = {"pg": "CDS_PG_PORT", "redis": "CDS_REDIS_PORT"}


def port_setting(text: str, name: str) -> int:
    """A TCP port given as an option or environment variable ``name``; exits with a clear message."""
    try:
        port = int(text.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        sys.exit(f"services: {name}={text!r} is not a TCP port (1-65535)")
    return port


def wanted_ports(pg_port: int | None = None, redis_port: int | None = None) -> dict[str, int | None]:
    """The ports asked for: the options, else CDS_PG_PORT / CDS_REDIS_PORT, else None (any)."""
    wanted: dict[str, int | None] = {"pg": pg_port, "redis": redis_port}
    for key, variable in PORT_VARIABLES.items():
        if wanted[key] is None and os.environ.get(variable, "").strip():
            wanted[key] = port_setting(os.environ[variable], variable)
    return wanted


def _taken(port: int, key: str) -> None:
    sys.exit(
        f"services: port {port} ({PORT_VARIABLES[key]} or --{key}-port) is in use by another program; "
        "choose another, or leave it unset for a free one"
    )


def start(pg_port: int | None = None, redis_port: int | None = None) -> int:
    install()
    STATE.mkdir(parents=True, exist_ok=True)
    STATE.chmod(0o755)  # the postgres user (as root) must reach var/services/pg
    env = read_env()
    wanted = wanted_ports(pg_port, redis_port)
    pg, redis = servers(env)
    if wanted["pg"] is not None and pg.port != wanted["pg"]:
        pg.stop()  # running on another port (or not at all): start it on the one asked for
        pg = PostgresCluster(pg.datadir, wanted["pg"])
    if not pg.running():
        if port_open(pg.port):  # the recorded port was taken meanwhile, or the one asked for is
            if wanted["pg"] is not None:
                _taken(pg.port, "pg")
            pg = PostgresCluster(pg.datadir, free_port())
        pg.start()
    if wanted["redis"] is not None and redis.port != wanted["redis"]:
        redis.stop()
        redis = RedisServer(redis.dir, wanted["redis"])
    if not redis.running():
        if port_open(redis.port):
            if wanted["redis"] is not None:
                _taken(redis.port, "redis")
            redis = RedisServer(redis.dir, free_port())
        redis.start()
    if pg.psql("SELECT 1 FROM pg_database WHERE datname = 'cds'") != "1":
        pg.psql("CREATE DATABASE cds")
    assert pg.bindir is not None
    ENV_FILE.write_text(
        f"CDS_TEST_DATABASE_URL={pg.url}\nCDS_TEST_REDIS_URL={redis.url}\nCDS_TEST_PG_BINDIR={pg.bindir}\n"
        f"CDS_TEST_PG_DATA={pg.datadir}\n"
    )
    print(f"services: PostgreSQL on 127.0.0.1:{pg.port} (data {pg.datadir}), Redis on 127.0.0.1:{redis.port}")
    print("services: to run the service on them:")
    print(f"  CDS_DATABASE_URL=postgresql://postgres@127.0.0.1:{pg.port}/cds CDS_REDIS_URL={redis.url} make run")
    print(f"services: the tests read {ENV_FILE.relative_to(REPO)}; `make services-stop` stops both")
    return 0


def stop() -> int:
    env = read_env()
    if not env:
        print("services: not started here (no var/services/services.env)")
        return 0
    pg, redis = servers(env)
    with contextlib.suppress(FileNotFoundError):
        pg.stop()
    redis.stop()
    if _is_root() and pg.datadir.parent.name.startswith("calciphylaxis-cds-services-"):  # made by pg_home()
        shutil.rmtree(pg.datadir.parent, ignore_errors=True)
    print("services: stopped")
    return 0


def status() -> int:
    env = read_env()
    if not env:
        print("services: not started (run `make services`)")
        return 1
    pg, redis = servers(env)
    ok = pg.running() and redis.running()
    print(
        f"services: PostgreSQL {'up' if pg.running() else 'down'} on {pg.port}, "
        f"Redis {'up' if redis.running() else 'down'} on {redis.port}"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument(
        "--pg-port",
        type=lambda text: port_setting(text, "--pg-port"),
        help="PostgreSQL's loopback port (start; default: CDS_PG_PORT, else the last one, else a free one)",
    )
    parser.add_argument(
        "--redis-port",
        type=lambda text: port_setting(text, "--redis-port"),
        help="Redis's loopback port (start; default: CDS_REDIS_PORT, else the last one, else a free one)",
    )
    args = parser.parse_args(argv)
    if args.command == "start":
        return start(args.pg_port, args.redis_port)
    return {"stop": stop, "status": status}[args.command]()


if __name__ == "__main__":
    raise SystemExit(main())
