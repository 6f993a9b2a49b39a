"""Prometheus metrics of a running ``fieldsync work``: the runner's counters and each feed's position,
served as text on 127.0.0.1:PORT/metrics."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from workers.runner import Runner


def render(runner: Runner) -> str:
    lines = [
        "# HELP fieldsync_changes_total Changes read from followed feeds.",
        "# TYPE fieldsync_changes_total counter",
        f"fieldsync_changes_total {runner.stats.changes}",
        "# HELP fieldsync_writes_total Documents written by the workers.",
        "# TYPE fieldsync_writes_total counter",
        f"fieldsync_writes_total {runner.stats.writes}",
        "# HELP fieldsync_parked_total Changes parked in the audit database after repeated failures.",
        "# TYPE fieldsync_parked_total counter",
        f"fieldsync_parked_total {runner.stats.parked}",
        "# HELP fieldsync_batches_total Feed batches processed.",
        "# TYPE fieldsync_batches_total counter",
        f"fieldsync_batches_total {runner.stats.batches}",
        "# HELP fieldsync_feed_changes_total Changes read, per worker and database.",
        "# TYPE fieldsync_feed_changes_total counter",
    ]
    for (worker, db), follower in sorted(runner.followers.items()):
        cp = follower.known_checkpoint
        lines.append(f'fieldsync_feed_changes_total{{worker="{worker}",db="{db}"}} {int(cp.get("processed", 0))}')
    lines += ["# HELP fieldsync_feed_parked_total Parked changes, per worker and database.",
              "# TYPE fieldsync_feed_parked_total counter"]
    for (worker, db), follower in sorted(runner.followers.items()):
        cp = follower.known_checkpoint
        lines.append(f'fieldsync_feed_parked_total{{worker="{worker}",db="{db}"}} {int(cp.get("parked", 0))}')
    return "\n".join(lines) + "\n"


def serve(runner: Runner, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") not in ("/metrics", ""):
                self.send_error(404)
                return
            body = render(runner).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
