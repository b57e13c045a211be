"""Real servers for the tests: a throwaway PostgreSQL cluster from Debian's binaries, a local Spark session.

Each is skipped with the reason when its parts are missing, except under CI (the CI variable set), where
`.ci/run` installs them and a missing part is a failure, never a skip."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest


def missing(reason: str) -> None:
    """Skip, or fail under CI (where every real component is installed)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs it: see .ci/run)")
    pytest.skip(reason)


def pg_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), newest version first."""
    found = shutil.which("pg_ctl")
    if found and Path(found).resolve().parent.joinpath("initdb").exists():
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server of its own (initdb + pg_ctl on a free port, trust auth on loopback), removed afterwards;
    yields its URL. As root the server runs as the `postgres` user (initdb refuses root). Raises RuntimeError with
    the reason when it cannot start."""
    bin_dir = pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
        user = "postgres"
    base = Path(tempfile.mkdtemp(prefix="cvlib-pg-"))  # not under pytest's root-only folder: the server reads it
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if user:
        shutil.chown(base, user)
        shutil.chown(sock, user)
    port = free_port()
    run = lambda *a: subprocess.run(_as_user([str(bin_dir / a[0]), *a[1:]], user), check=True,  # noqa: E731
                                    capture_output=True, text=True)
    try:
        run("initdb", "-D", str(data), "-U", "cvlib", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        run("pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"), "-o",
            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c TimeZone=UTC", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"{exc.cmd[-1] if exc.cmd else 'postgres'} failed: {exc.stderr.strip()[-300:]}") from None
    try:
        yield f"postgresql://cvlib@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user),
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's PostgreSQL server (`postgres_server`): skipped with the reason when it cannot start, a
    failure under CI."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except RuntimeError as exc:
            missing(str(exc))
        yield url


def pg_load(url: str, table: str, ddl: str, df) -> None:
    """Create `table` with the column types in `ddl` and copy the frame's rows into it (NULL for None)."""
    import io as _io

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} ({ddl})")
        buf = _io.StringIO()
        df.to_csv(buf, index=False, header=False)
        with conn.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buf.getvalue())


@pytest.fixture(scope="session")
def spark_master() -> str:
    """A local Spark master (local[2]) when pyspark and a Java runtime are there."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing("pyspark is not installed: pip install -e '.[spark]'")
    if shutil.which("java") is None:
        missing("no Java runtime for Spark: apt-get install openjdk-17-jre-headless")
    return "local[2]"
