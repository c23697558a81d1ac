"""Load on one URL for a fixed time: requests per second and latency percentiles.

wrk (Debian's ``wrk``) when it is installed: a C event loop that costs the machine little. Without
it a Python thread pool stands in (slower as a client, so it under-reports what the server can do).
"""

from __future__ import annotations

import http.client
import re
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class LoadResult:
    """Requests answered, requests per second, latency percentiles (seconds), errors, and how the
    load was made."""

    requests: int
    requests_per_second: float
    p50_seconds: float
    p99_seconds: float
    errors: int
    tool: str


def run_load(url: str, seconds: float, connections: int) -> LoadResult:
    """Keep ``connections`` keep-alive connections busy on ``url`` for ``seconds``."""
    if shutil.which("wrk"):
        return _wrk(url, seconds, connections)
    return _thread_pool(url, seconds, connections)


def _wrk(url: str, seconds: float, connections: int) -> LoadResult:
    argv = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency", url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    percentiles = {int(p): _seconds(v, u) for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)}
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    answered = int(re.search(r"(\d+) requests in ", out).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return LoadResult(
        answered,
        rate,
        percentiles[50],
        percentiles[99],
        errors + (int(non_2xx.group(1)) if non_2xx else 0),
        f"wrk -t2 -c{connections}",
    )


def _seconds(value: str, unit: str) -> float:
    return float(value) * UNIT_SECONDS[unit]


def _thread_pool(url: str, seconds: float, connections: int) -> LoadResult:
    parts = urlsplit(url)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        mine, failed = [], 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", parts.path)
                response = conn.getresponse()
                response.read()
                failed += response.status >= 400
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cuts = statistics.quantiles(latencies, n=100)
    return LoadResult(
        len(latencies),
        len(latencies) / (time.monotonic() - began),
        cuts[49],
        cuts[98],
        errors[0],
        f"Python threads ×{connections}",
    )
