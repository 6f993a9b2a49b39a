"""The embedded default server: our Node entry (``server/server.js``) over express-pouchdb, on loopback.

``start`` runs it in the background with its data, log and pid file under the data directory and waits until
it answers as the admin; ``stop`` ends only the process of that pid file.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from workers.couch import Couch
from workers.errors import EmbeddedServerError, FieldsyncError
from workers.settings import ADMIN_FILE, Settings

SERVER_DIR = Path(os.environ.get("FIELDSYNC_SERVER_DIR", Path(__file__).resolve().parent.parent / "server"))
PID_FILE = "server.pid"
OUT_FILE = "server.out"
LOOPBACK = {"127.0.0.1", "localhost"}


@dataclass
class Started:
    url: str
    pid: int
    data_dir: Path
    admin_file: Path | None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)
    return any(part.endswith(b"server.js") for part in cmdline)


def running_pid(data_dir: Path) -> int | None:
    pid_path = data_dir / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid_alive(pid) and _is_our_server(pid):
        return pid
    return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ensure_admin(settings: Settings, data_dir: Path) -> tuple[str, str, Path | None]:
    creds = settings.credentials
    admin_path = data_dir / ADMIN_FILE
    if creds is not None:
        return creds[0], creds[1], admin_path if admin_path.exists() else None
    user, password = "fieldsync-admin", secrets.token_urlsafe(18)
    admin_path.write_text(json.dumps({"user": user, "password": password}) + "\n")
    admin_path.chmod(0o600)
    return user, password, admin_path


def check_prerequisites() -> str:
    node = shutil.which("node")
    if node is None:
        raise EmbeddedServerError("node is not installed: the embedded server needs Node.js 18 or later on PATH")
    if not (SERVER_DIR / "node_modules" / "express-pouchdb").is_dir():
        raise EmbeddedServerError(
            f"the embedded server's npm packages are missing: run `npm ci --prefix {SERVER_DIR}` (or `make setup`)"
        )
    return node


def start(settings: Settings, data_dir: Path | None = None, *, wait_seconds: float = 60.0) -> Started:
    data_dir = (data_dir or settings.data_dir).resolve()
    if settings.host not in LOOPBACK:
        raise EmbeddedServerError(
            f"the embedded server binds to 127.0.0.1 only; FIELDSYNC_COUCH_URL names {settings.host}"
        )
    node = check_prerequisites()
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        data_dir.chmod(0o700)  # the server's config (admin hash, cookie secret), data and logs are private
        probe = data_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EmbeddedServerError(f"data directory {data_dir} is not writable ({exc.strerror})") from None
    pid = running_pid(data_dir)
    if pid is not None:
        raise EmbeddedServerError(f"the embedded server is already running (pid {pid}) with data in {data_dir}")
    if not _port_free("127.0.0.1", settings.port):
        raise EmbeddedServerError(f"port {settings.port} on 127.0.0.1 is already in use: set FIELDSYNC_COUCH_URL")
    user, password, admin_path = _ensure_admin(settings, data_dir)
    env = dict(os.environ, FIELDSYNC_ADMIN_USER=user, FIELDSYNC_ADMIN_PASSWORD=password)
    out = os.fdopen(os.open(data_dir / OUT_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
    proc = subprocess.Popen(
        [node, str(SERVER_DIR / "server.js"), "--port", str(settings.port), "--data", str(data_dir)],
        cwd=str(SERVER_DIR), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    (data_dir / PID_FILE).write_text(f"{proc.pid}\n")
    (data_dir / PID_FILE).chmod(0o600)
    couch = Couch(settings.couch_url, (user, password), timeout=5, retries=0)
    deadline = time.monotonic() + wait_seconds
    while True:
        if proc.poll() is not None:
            (data_dir / PID_FILE).unlink(missing_ok=True)
            raise EmbeddedServerError(f"the embedded server exited at start: {_tail(data_dir / OUT_FILE)}")
        try:
            couch.session()
            break
        except FieldsyncError:
            if time.monotonic() > deadline:
                _terminate(proc.pid)
                (data_dir / PID_FILE).unlink(missing_ok=True)
                raise EmbeddedServerError(
                    f"the embedded server did not answer within {wait_seconds:.0f}s: {_tail(data_dir / OUT_FILE)}"
                ) from None
            time.sleep(0.2)
    return Started(settings.couch_url, proc.pid, data_dir, admin_path)


def stop(settings: Settings, data_dir: Path | None = None) -> int | None:
    """Stop the server of this data directory; returns its pid, or None when none was running."""
    data_dir = (data_dir or settings.data_dir).resolve()
    pid = running_pid(data_dir)
    if pid is None:
        (data_dir / PID_FILE).unlink(missing_ok=True)
        return None
    _terminate(pid)
    (data_dir / PID_FILE).unlink(missing_ok=True)
    return pid


def _terminate(pid: int, grace: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            pass
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(text[-lines:]) or "(no output)"
