"""A simulated device for the tests and the demo: a Node PouchDB process (``server/device.js``) with its own
LevelDB databases, replicating with the server through the CouchDB protocol as its own user."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from workers.embedded import SERVER_DIR


class DeviceError(Exception):
    def __init__(self, op: str, error: dict[str, Any]) -> None:
        super().__init__(f"{op}: {error.get('status')} {error.get('name')}: {error.get('message')}")
        self.status = error.get("status")
        self.name = error.get("name")


class Device:
    def __init__(self, directory: Path, name: str = "device") -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is needed for simulated devices")
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._ids = itertools.count(1)
        self._proc = subprocess.Popen(
            [node, str(SERVER_DIR / "device.js"), str(directory)],
            cwd=str(SERVER_DIR), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    @property
    def pid(self) -> int:
        """The device's Node process (its CPU is read from ``/proc`` by the benchmarks)."""
        return self._proc.pid

    def call(self, op: str, **fields: Any) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        msg_id = next(self._ids)
        self._proc.stdin.write(json.dumps({"id": msg_id, "op": op, **fields}) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"device {self.name} exited (status {self._proc.poll()})")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise DeviceError(op, answer.get("error") or {})
        return answer.get("result")

    # conveniences
    def put(self, db: str, doc: dict[str, Any]) -> str:
        return str(self.call("put", db=db, doc=doc)["rev"])

    def get(self, db: str, doc_id: str, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call("get", db=db, docId=doc_id, options=options)
        return result

    def docs(self, db: str, conflicts: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("allDocs", db=db, conflicts=conflicts)
        return result

    def push(self, db: str, url: str, timeout: float | None = None) -> dict[str, Any]:
        """Replicate ``db`` to ``url``; with ``timeout`` (seconds), a replication that has not settled by then is
        cancelled and raises :class:`DeviceError` named ``timeout``."""
        return self._replicate(db, url, "push", timeout)

    def pull(self, db: str, url: str, timeout: float | None = None) -> dict[str, Any]:
        """Replicate ``url`` into ``db``; ``timeout`` as for :meth:`push`."""
        return self._replicate(db, url, "pull", timeout)

    def _replicate(self, db: str, url: str, direction: str, timeout: float | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"db": db, "url": url, "direction": direction}
        if timeout is not None:
            fields["timeout_ms"] = int(timeout * 1000)
        result: dict[str, Any] = self.call("replicate", **fields)
        return result

    def live_pull(self, db: str, url: str) -> None:
        """Keep ``db`` pulling from ``url`` continuously (a longpoll feed, retried), as an open app does."""
        self.call("live", db=db, url=url)

    def stop_live(self, db: str) -> bool:
        return bool(self.call("stopLive", db=db)["stopped"])

    def wait_for(self, db: str, doc_id: str, timeout: float) -> float | None:
        """Seconds until ``doc_id`` is in the local ``db`` (brought by a live pull), or None after ``timeout``."""
        result = self.call("waitFor", db=db, docId=doc_id, timeout_ms=int(timeout * 1000))
        return float(result["ms"]) / 1000 if result["found"] else None

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(RuntimeError, DeviceError, BrokenPipeError):
                self.call("close")
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
