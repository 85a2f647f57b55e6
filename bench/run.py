"""Benchmark the service against the floor, and print a table (also written as JSON).

    make bench            # or: .venv/bin/python -m bench.run [--quick] [--json PATH]

Issue 21, "fast on the first look at a chart": the headline is a chart the service has never seen.
"Over HTTP" means against the production server started as the README starts it
(`calciphylaxis-cds serve`, waitress), one process, with `CDS_BENCH_ECHO=true`, which exposes
`POST /bench/echo`: the same server and middleware decode the body and answer no cards. Echo is
the floor over HTTP; `json.loads` of the same body is the floor in process.

1. First look (the headline), over HTTP: a typical order-select (60 Observations) of a patient the
   service has never seen, a new chart on every call (`payloads.order_select(60, now, chart=i)`,
   a fresh i each time), beside the same chart on every call (chart 0, read before), beside echo
   of the new chart's body. The three calls alternate, so that drift in the machine's speed hits
   all of them alike. Figures: p50/p99 of each, and each hook call's p50 over echo's p50.
2. 10,000 Observations, patient-view, the same body on every call: (a) in process, through the
   Flask test client, against `json.loads` of that body; (b) over HTTP, against echo of that body.
   Alternating; p50 over p50.
3. Throughput (wrk) of the typical order-select (the same chart every call: wrk sends one body)
   and of echo at 1, 4 and 16 connections, one after the other per row; order-select's req/s
   over echo's.
4. Growth curve, patient-view in process at 10, 100, 1,000 and 10,000 Observations: the median
   call with a new chart every call and with the same chart, `json.loads` of the body, their
   ratios, and the new-chart call's time above `json.loads`. When the cost is linear in what is
   read (the newest results of each analyte) and flat in what is not (the rest is only decoded),
   the ratio falls towards a constant as the body grows.
5. 100,000 Observations (about 60 MB), patient-view: (a) in process against `json.loads` of the
   body (median of 3; one each with --quick); (b) peak memory, measured in a fresh server
   process: one small warm-up call, VmRSS read from /proc/<pid>/status, then the one 100k body,
   then VmHWM; the figure is (VmHWM after - VmRSS before) / body bytes. The kernel's peak is
   reset between the two readings (/proc/<pid>/clear_refs) where it allows, so that a start-up
   peak cannot hide the call's. The same on another fresh server for echo of the same body: the
   memory floor (receiving and decoding it). A second figure, in process: tracemalloc's peak
   during the same call (Python allocations only, including the test client's copies of the
   body), and during `json.loads` and `orjson.loads` of the body alone.
6. No-prefetch path: a loopback FHIR server that delays every answer by 50 ms; a hook call that
   must fetch the prefetch keys itself. Parallel fetching should keep it near one delay.
7. Memory: peak RSS (VmHWM) of the server of sections 1-3 at start-up and after everything above
   plus three huge (10,000-Observation) order-selects.
8. Scaling out: the same typical order-select under wrk against the server with 1 and with 2
   worker processes (`serve --workers N`), at 16 and 64 connections: throughput, p50/p99, errors,
   and the 2-process/1-process throughput ratio (on 2 cores, with wrk on the same cores).

Then the targets of issue 21, each with the figure measured in this run and whether it is met.

In process, the app is set up as the servers run it (bench/inprocess.py): after `create_app` and a
warm-up call of each hook, the start-up heap is settled (`cds_service.http.server.settle_heap()`:
`gc.collect(); gc.freeze()`), as `serve` does before its first call, so that in-process figures
match the server's. `json.loads` is measured in the same process, under the same conditions; its
time includes freeing the decoded objects, as a call's includes freeing its own.

Only ratios measured in one run mean anything: absolute times vary between machines. Nothing here
asserts a time: a target missed is reported, not raised.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests

from bench import payloads
from bench.inprocess import HOOK_PATHS, call, settled_client

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

ORDER_SELECT = HOOK_PATHS["order-select"]
PATIENT_VIEW = HOOK_PATHS["patient-view"]
ECHO = "/bench/echo"
TYPICAL = payloads.SIZES["typical"]
HUGE = payloads.SIZES["huge"]
GROWTH = (10, 100, 1_000, 10_000)
BIGGEST = 100_000

# Rounds of each alternating measurement, (--quick, full); a round calls each contender once.
ROUNDS = {
    "first_look": (30, 200),
    "10k": (5, 20),
    "100k": (1, 3),
    10: (30, 200),
    100: (30, 200),
    1_000: (10, 50),
    10_000: (3, 10),
}

# The payloads' clock: every chart of the run is dated from the moment the run started.
RUN_NOW = datetime.now(UTC)
# Every new chart of the run gets a number of its own, so no "new" chart is ever sent twice.
_NEW_CHARTS = itertools.count(1)


def rounds(part: str | int, quick: bool) -> int:
    return ROUNDS[part][0 if quick else 1]


def new_chart() -> int:
    return next(_NEW_CHARTS)


def order_select_body(observations: int, chart: int = 0) -> bytes:
    return payloads.body(payloads.order_select(observations, RUN_NOW, chart=chart))


def patient_view_body(observations: int, chart: int = 0) -> bytes:
    return payloads.body(payloads.patient_view(observations, RUN_NOW, chart=chart))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000, "n": len(ordered)}


def ratio(numerator: dict, denominator: dict) -> float:
    """One measurement's p50 over another's (both from the same alternating run)."""
    return numerator["p50_ms"] / denominator["p50_ms"]


def repeat(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def alternate_in_process(calls: dict[str, Callable[[int], Any]], n: int, warmup: int = 2) -> dict[str, dict]:
    """``calls``: name -> a function of the round's number. Each round calls every function once,
    in turn, so that drift in the machine's speed hits all of them alike; the first ``warmup``
    rounds are not counted. Percentiles of each name's times."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + n):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn(i)  # the result is freed before the clock is read: freeing is part of the cost
            elapsed = time.perf_counter() - start
            if i >= warmup:
                samples[name].append(elapsed)
    return {name: percentiles(values) for name, values in samples.items()}


def traced_peak_bytes(fn: Callable[[], Any]) -> int:
    """tracemalloc's peak while ``fn`` runs: the most bytes of Python allocations made during the
    call that were alive at the same time (memory allocated before it does not count)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url}")


# --------------------------------------------------------------------------------------------
# the server over HTTP
# --------------------------------------------------------------------------------------------


class Server:
    """The service started exactly as the README starts it: the console script under waitress.
    With one worker (the default) the process started is the server itself, so its /proc status
    is the server's memory."""

    def __init__(self, extra_env: dict[str, str] | None = None, workers: int = 1):
        self.port = free_port()
        self.tmp = tempfile.TemporaryDirectory()
        exe = Path(sys.executable).with_name("calciphylaxis-cds")
        command = [str(exe), "serve"] if exe.exists() else [sys.executable, "-m", "cds_service", "serve"]
        command += ["--workers", str(workers)]
        base_env = {
            k: v for k, v in os.environ.items() if k not in ("CDS_DATABASE_URL", "CDS_REDIS_URL", "CDS_ISSUERS_FILE")
        }
        env = dict(
            base_env,
            CDS_PORT=str(self.port),
            CDS_BENCH_ECHO="true",
            CDS_FEEDBACK_DB=str(Path(self.tmp.name) / "f.db"),
            **(extra_env or {}),
        )
        self.log = open(Path(self.tmp.name) / "server.log", "wb")
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log)
        self.base = f"http://127.0.0.1:{self.port}"
        wait_for(self.base + "/health", self.proc)
        self.rss_at_start_mb = self.peak_rss_mb()

    def status_kb(self, field: str) -> int:
        """A memory figure of the server process from /proc/<pid>/status (VmRSS, VmHWM), in kB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", status).group(1))

    def peak_rss_mb(self) -> float:
        return self.status_kb("VmHWM") / 1024

    def reset_peak_rss(self) -> bool:
        """Set the process's VmHWM back to its current RSS (Linux 4.0+); False where not allowed."""
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        self.tmp.cleanup()


def _alternating(server: Server, session: requests.Session, calls: dict, n: int, warmup: int = 3) -> dict:
    """``calls``: name -> (bodies, path). The calls alternate, one of each in turn, so that drift in
    the machine's speed hits all of them alike; a name with several bodies sends the next each time
    (round i sends bodies[i], so two names given the same list send the same body in a round)."""
    headers = {"Content-Type": "application/json"}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(n + warmup):
        for name, (variants, path) in calls.items():
            body = variants[i % len(variants)]
            start = time.perf_counter()
            response = session.post(server.base + path, data=body, headers=headers, timeout=300)
            elapsed = time.perf_counter() - start
            assert response.status_code == 200, response.text[:300]
            if i >= warmup:
                samples[name].append(elapsed)
    return {name: percentiles(values) for name, values in samples.items()}


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
"""


def run_wrk(url: str, body: bytes, connections: int, seconds: int, threads: int | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        threads = threads or min(connections, 2)
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "5s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, BENCH_BODY=str(body_file)),
            timeout=seconds + 30,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    socket_errors = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        socket_errors = sum(int(x) for x in m.groups())
    latency = {}
    for pct in ("50", "99"):
        if m := re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out):
            value, unit = float(m.group(1)), m.group(2)
            latency[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return {"connections": connections, "requests": total, "rps": rps, "errors": non_2xx + socket_errors, **latency}


WRK_MISSING = "wrk not installed (make bench installs it from Debian's packages)"


# --------------------------------------------------------------------------------------------
# 1. first look: a new patient's chart, over HTTP (the headline)
# --------------------------------------------------------------------------------------------


def bench_first_look(server: Server, quick: bool) -> dict:
    """Typical order-select, a new patient on every call ("new chart"), beside the same patient
    on every call ("same chart"), beside echo of the new chart's body, alternating on one server.
    ``ratio_*_vs_echo``: the hook call's p50 over echo's p50."""
    n, warmup = rounds("first_look", quick), 3
    new_charts = [order_select_body(TYPICAL, chart=new_chart()) for _ in range(n + warmup)]
    same_chart = [order_select_body(TYPICAL)]
    result = _alternating(
        server,
        requests.Session(),
        {"new chart": (new_charts, ORDER_SELECT), "same chart": (same_chart, ORDER_SELECT), "echo": (new_charts, ECHO)},
        n,
        warmup,
    )
    result["observations"] = TYPICAL
    result["body_bytes"] = len(same_chart[0])
    result["ratio_new_chart_vs_echo"] = ratio(result["new chart"], result["echo"])
    result["ratio_same_chart_vs_echo"] = ratio(result["same chart"], result["echo"])
    return result


# --------------------------------------------------------------------------------------------
# 2. 10,000 Observations, patient-view: in process and over HTTP
# --------------------------------------------------------------------------------------------


def bench_10k_in_process(client: Any, quick: bool) -> dict:
    """Patient-view, 10,000 Observations, the same body every call, through the Flask test
    client, alternating with ``json.loads`` of that body. ``ratio_call_vs_json_loads``: p50/p50."""
    body = patient_view_body(HUGE)
    result = alternate_in_process(
        {"json_loads": lambda i: json.loads(body), "call": lambda i: call(client, "patient-view", body)},
        rounds("10k", quick),
    )
    return {"body_bytes": len(body), **result, "ratio_call_vs_json_loads": ratio(result["call"], result["json_loads"])}


def bench_10k_http(server: Server, quick: bool) -> dict:
    """The same body, over HTTP, alternating with echo of that body on the same server.
    ``ratio_patient_view_vs_echo``: p50/p50."""
    body = [patient_view_body(HUGE)]
    result = _alternating(
        server, requests.Session(), {"patient-view": (body, PATIENT_VIEW), "echo": (body, ECHO)}, rounds("10k", quick)
    )
    return {
        "body_bytes": len(body[0]),
        **result,
        "ratio_patient_view_vs_echo": ratio(result["patient-view"], result["echo"]),
    }


# --------------------------------------------------------------------------------------------
# 3. throughput against echo
# --------------------------------------------------------------------------------------------


def bench_throughput(server: Server, quick: bool) -> list[dict]:
    """wrk posts the typical order-select (the same chart every call), then echo of the same
    body, at 1, 4 and 16 connections. ``ratio_rps``: order-select's req/s over echo's, per row."""
    if not shutil.which("wrk"):
        return [{"skipped": WRK_MISSING}]
    seconds = 2 if quick else 5
    body = order_select_body(TYPICAL)
    rows = []
    for connections in (1, 4, 16):
        hook = run_wrk(server.base + ORDER_SELECT, body, connections, seconds)
        echo = run_wrk(server.base + ECHO, body, connections, seconds)
        rows.append(
            {"connections": connections, "order_select": hook, "echo": echo, "ratio_rps": hook["rps"] / echo["rps"]}
        )
    return rows


# --------------------------------------------------------------------------------------------
# 4. growth curve, in process
# --------------------------------------------------------------------------------------------


def bench_growth_row(client: Any, observations: int, quick: bool) -> dict:
    """One size of the growth curve. Each round: ``json.loads`` of a new chart's body, the call
    with that new chart, the call with the same chart (chart 0) as every round.
    ``above_json_loads_ms``: the new-chart call's p50 minus json.loads's p50, the service's own
    work beyond the floor (it decodes with orjson, faster than json.loads, so this can be small)."""
    n, warmup = rounds(observations, quick), 2
    new_charts = [patient_view_body(observations, chart=new_chart()) for _ in range(n + warmup)]
    same_chart = patient_view_body(observations)
    result = alternate_in_process(
        {
            "json_loads": lambda i: json.loads(new_charts[i]),
            "new_chart": lambda i: call(client, "patient-view", new_charts[i]),
            "same_chart": lambda i: call(client, "patient-view", same_chart),
        },
        n,
        warmup,
    )
    return {
        "observations": observations,
        "body_bytes": len(same_chart),
        **result,
        "ratio_new_chart_vs_json_loads": ratio(result["new_chart"], result["json_loads"]),
        "ratio_same_chart_vs_json_loads": ratio(result["same_chart"], result["json_loads"]),
        "above_json_loads_ms": result["new_chart"]["p50_ms"] - result["json_loads"]["p50_ms"],
    }


def bench_growth(client: Any, quick: bool) -> list[dict]:
    return [bench_growth_row(client, observations, quick) for observations in GROWTH]


# --------------------------------------------------------------------------------------------
# 5. 100,000 Observations: time in process, peak memory of a fresh server
# --------------------------------------------------------------------------------------------


def bench_100k_in_process(client: Any, body: bytes, quick: bool) -> dict:
    """Patient-view with the 100,000-Observation body (the same body each round), alternating
    with ``json.loads`` of it, no warm-up round (the app is warm from the parts before).
    ``ratio_call_vs_json_loads``: p50/p50.

    Then tracemalloc's peak (Python allocations only) during one call, one ``json.loads`` and one
    ``orjson.loads`` (the service's decoder) of the body: ``tracemalloc_peak_*_vs_body`` is that
    peak over the body's size. The call's includes the test client's copies of the body. orjson's
    parser allocates far more than it touches (tracemalloc counts all of it, RSS only what is
    touched), so these overstate resident memory; the RSS figures of the fresh server are the
    honest ones."""
    result = alternate_in_process(
        {"json_loads": lambda i: json.loads(body), "call": lambda i: call(client, "patient-view", body)},
        rounds("100k", quick),
        warmup=0,
    )
    peaks = {
        "call": traced_peak_bytes(lambda: call(client, "patient-view", body)),
        "json_loads": traced_peak_bytes(lambda: json.loads(body)),
        "orjson_loads": traced_peak_bytes(lambda: orjson.loads(body)),
    }
    return {
        "body_bytes": len(body),
        **result,
        "ratio_call_vs_json_loads": ratio(result["call"], result["json_loads"]),
        **{f"tracemalloc_peak_{name}_bytes": peak for name, peak in peaks.items()},
        **{f"tracemalloc_peak_{name}_vs_body": peak / len(body) for name, peak in peaks.items()},
    }


def fresh_server_peak_growth(path: str, body: bytes) -> dict:
    """One call of ``path`` with ``body`` on a fresh server process (its body limit raised for
    this body): one small warm-up call (a typical patient-view), VmRSS read, the kernel's peak
    reset to it where allowed, then the one call, then VmHWM read.
    ``ratio_peak_growth_vs_body``: (VmHWM after - VmRSS before) / body bytes. ``peak_reset``
    False means VmHWM could not be reset, so a start-up peak above the call's would hide the
    call's (``vmhwm_before_kb`` above ``vmrss_before_kb`` shows that there was one)."""
    server = Server({"CDS_MAX_BODY_BYTES": str(2 * len(body))})
    try:
        session = requests.Session()
        headers = {"Content-Type": "application/json"}
        warm = session.post(server.base + PATIENT_VIEW, data=patient_view_body(TYPICAL), headers=headers, timeout=60)
        assert warm.status_code == 200, warm.text[:300]
        rss_before = server.status_kb("VmRSS")
        peak_reset = server.reset_peak_rss()
        hwm_before = server.status_kb("VmHWM")
        start = time.perf_counter()
        response = session.post(server.base + path, data=body, headers=headers, timeout=600)
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, response.text[:300]
        hwm_after, rss_after = server.status_kb("VmHWM"), server.status_kb("VmRSS")
    finally:
        server.close()
    growth_bytes = (hwm_after - rss_before) * 1024
    return {
        "vmrss_before_kb": rss_before,
        "peak_reset": peak_reset,
        "vmhwm_before_kb": hwm_before,
        "vmhwm_after_kb": hwm_after,
        "vmrss_after_kb": rss_after,
        "peak_growth_bytes": growth_bytes,
        "ratio_peak_growth_vs_body": growth_bytes / len(body),
        "http_call_ms": elapsed * 1000,
    }


def bench_100k_server_memory(body: bytes) -> dict:
    """The 100,000-Observation patient-view on a fresh server (target 6), and, for the floor,
    echo of the same body on another fresh server: what merely receiving and decoding it costs."""
    return {
        "body_bytes": len(body),
        "patient_view": fresh_server_peak_growth(PATIENT_VIEW, body),
        "echo": fresh_server_peak_growth(ECHO, body),
    }


# --------------------------------------------------------------------------------------------
# 7. memory of the main server
# --------------------------------------------------------------------------------------------


def bench_memory(server: Server) -> dict:
    """Peak RSS (VmHWM) of the one server process: at start-up, and after every run above plus
    three more huge order-selects (section 2 already sent huge patient-views many times)."""
    session = requests.Session()
    body = order_select_body(HUGE)
    for _ in range(3):
        session.post(server.base + ORDER_SELECT, data=body, headers={"Content-Type": "application/json"}, timeout=300)
    return {
        "peak_rss_mb_at_start": server.rss_at_start_mb,
        "peak_rss_mb_after_huge": server.peak_rss_mb(),
        "huge_body_mb": len(body) / 1e6,
    }


# --------------------------------------------------------------------------------------------
# 6. no-prefetch path
# --------------------------------------------------------------------------------------------


def bench_no_prefetch(quick: bool) -> dict:
    try:
        from tests.fhir_server import FhirTestServer  # the loopback FHIR server of the test suite
    except ImportError as exc:
        return {"skipped": f"loopback FHIR server unavailable: {exc}"}
    delay = 0.05
    request = payloads.order_select(TYPICAL, RUN_NOW)
    prefetch = request.pop("prefetch")
    resources = [prefetch["patient"]]
    for key, value in prefetch.items():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            resources.extend(entry["resource"] for entry in value["entry"])
    with FhirTestServer(resources, delay=delay) as fhir:
        request["fhirServer"] = fhir.base_url
        server = Server({"CDS_FHIR_ALLOWED_SERVERS": fhir.base_url})
        try:
            session = requests.Session()
            url = server.base + ORDER_SELECT
            keys_fetched = []

            def call():
                before = len(fhir.requests)
                response = session.post(url, json=request)
                assert response.status_code == 200, response.text[:300]
                keys_fetched.append(len(fhir.requests) - before)

            samples = repeat(call, 10 if quick else 30)
            # One FHIR round trip as the service sees it: a single search with the same delay.
            one_trip = repeat(
                lambda: session.get(fhir.base_url + f"/Patient/{payloads.PATIENT_ID}"), 10 if quick else 30
            )
        finally:
            server.close()
    result = {
        "delay_ms": delay * 1000,
        "fhir_requests_per_call": max(keys_fetched),
        "hook_call": percentiles(samples),
        "one_round_trip": percentiles(one_trip),
    }
    result["ratio_vs_one_round_trip_p50"] = result["hook_call"]["p50_ms"] / result["one_round_trip"]["p50_ms"]
    return result


# --------------------------------------------------------------------------------------------
# 8. scaling out: 1 and 2 worker processes
# --------------------------------------------------------------------------------------------


def _process_tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its children so far (Linux /proc), else None."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0
        for each in [pid, *map(int, children)]:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _wrk_with_cpu(server: Server, url: str, body: bytes, connections: int, seconds: int) -> dict:
    before, started = _process_tree_cpu_seconds(server.proc.pid), time.time()
    result = run_wrk(url, body, connections, seconds, threads=1)
    after, ended = _process_tree_cpu_seconds(server.proc.pid), time.time()
    if before is not None and after is not None:
        result["server_cpu_cores"] = (after - before) / (ended - started)
    return result


def bench_workers(quick: bool) -> dict:
    """The same typical order-select, the same server settings, 1 and 2 worker processes. Both
    servers run side by side (the idle one costs nothing) and the throughput runs alternate
    between them, so that drift in the machine's speed hits both alike; the median of the rounds
    is compared. wrk runs one thread (the least CPU taken from the servers on these 2 cores)."""
    if not shutil.which("wrk"):
        return {"skipped": WRK_MISSING}
    seconds, rounds = (3, 1) if quick else (8, 5)
    body = order_select_body(TYPICAL)
    servers = {1: Server(workers=1), 2: Server(workers=2)}
    rows = []
    try:
        urls = {w: s.base + ORDER_SELECT for w, s in servers.items()}
        for url in urls.values():
            run_wrk(url, body, 16, 2, threads=1)  # warm-up: every worker and thread has served calls
        throughput: dict[int, list[dict]] = {1: [], 2: []}
        for _ in range(rounds):
            for workers in (1, 2):
                throughput[workers].append(_wrk_with_cpu(servers[workers], urls[workers], body, 16, seconds))
        # Each round's two runs are seconds apart, so their ratio is the least touched by the
        # machine's drift (which moved a single configuration's throughput by 40% within a run).
        paired = sorted(two["rps"] / one["rps"] for one, two in zip(throughput[1], throughput[2], strict=True))
        for workers in (1, 2):
            runs = sorted(throughput[workers], key=lambda r: r["rps"])
            median = runs[len(runs) // 2]
            rows.append({"workers": workers, "rps_runs": [r["rps"] for r in throughput[workers]], **median})
        for workers in (1, 2):
            rows.append({"workers": workers, **_wrk_with_cpu(servers[workers], urls[workers], body, 64, seconds)})
        # The floor at 64 connections: the echo endpoint (decode the body, answer no cards) on the
        # same servers. What it cannot do, no hook call can.
        for workers in (1, 2):
            echo = _wrk_with_cpu(servers[workers], servers[workers].base + ECHO, body, 64, seconds)
            rows.append({"workers": workers, "target": "echo", **echo})
    finally:
        for server in servers.values():
            server.close()
    by = {(r["workers"], r["connections"]): r for r in rows if r.get("target") != "echo"}
    echo = {r["workers"]: r for r in rows if r.get("target") == "echo"}
    return {
        "seconds": seconds,
        "rows": rows,
        "throughput_ratio_2_vs_1": {c: by[(2, c)]["rps"] / by[(1, c)]["rps"] for c in (16, 64)},
        "paired_ratios_16_connections": paired,
        "paired_ratio_16_connections_median": statistics.median(paired),
        "p99_ms_64_connections_2_workers": by[(2, 64)].get("p99_ms"),
        "echo_p99_ms_64_connections_2_workers": echo[2].get("p99_ms"),
        "echo_rps_64_connections_2_workers": echo[2]["rps"],
    }


# --------------------------------------------------------------------------------------------
# targets (issue 21)
# --------------------------------------------------------------------------------------------


def _target(name: str, measured: float | None, comparison: str, limit: float, unit: str = "x") -> dict:
    """One target: ``measured`` against ``limit`` (``comparison`` "<=" or ">="); ``met`` None when
    the figure was not measured (wrk missing)."""
    met = None if measured is None else measured <= limit if comparison == "<=" else measured >= limit
    return {"target": name, "measured": measured, "comparison": comparison, "limit": limit, "unit": unit, "met": met}


def targets(results: dict) -> list[dict]:
    """The six targets of issue 21, from the figures of this run."""
    first, pv, big = results["first_look"], results["patient_view_10k"], results["observations_100k"]
    at_16 = next((r for r in results["throughput"] if r.get("connections") == 16), None)
    return [
        _target(
            "new patient's typical chart, order-select over HTTP vs echo (p50)",
            first["ratio_new_chart_vs_echo"],
            "<=",
            1.5,
        ),
        _target(
            "10,000 Observations patient-view vs json.loads, in process (p50)",
            pv["in_process"]["ratio_call_vs_json_loads"],
            "<=",
            1.5,
        ),
        _target(
            "10,000 Observations patient-view vs echo of the same body, HTTP (p50)",
            pv["http"]["ratio_patient_view_vs_echo"],
            "<=",
            1.5,
        ),
        _target(
            "order-select throughput at 16 connections, share of echo's",
            at_16["ratio_rps"] if at_16 else None,
            ">=",
            0.6,
            unit="%",
        ),
        _target(
            "100,000 Observations patient-view vs json.loads, in process (p50)",
            big["in_process"]["ratio_call_vs_json_loads"],
            "<=",
            2.0,
        ),
        _target(
            "100,000 Observations: server's peak RSS growth vs the body's size",
            big["server_memory"]["patient_view"]["ratio_peak_growth_vs_body"],
            "<=",
            3.0,
        ),
    ]


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _timing_row(label: str, figures: dict, comparison: str = "") -> str:
    return f"   {label:<50} {figures['p50_ms']:>9.2f} {figures['p99_ms']:>9.2f}   {comparison}"


def render_first_look(r: dict) -> list[str]:
    return [
        f"1. first look: typical order-select ({r['observations']} obs, {r['body_bytes'] / 1e6:.2f} MB) over HTTP,"
        " calls alternating",
        f"   {'(ms)':<50} {'p50':>9} {'p99':>9}   p50 / echo's",
        _timing_row(
            "new chart every call (a patient never seen)", r["new chart"], f"{r['ratio_new_chart_vs_echo']:.2f}x"
        ),
        _timing_row("same chart every call", r["same chart"], f"{r['ratio_same_chart_vs_echo']:.2f}x"),
        _timing_row("echo of the new chart's body", r["echo"]),
    ]


def render_10k(r: dict) -> list[str]:
    inner, http = r["in_process"], r["http"]
    return [
        f"2. 10,000 Observations, patient-view, the same {inner['body_bytes'] / 1e6:.2f} MB body every call",
        f"   {'(ms)':<50} {'p50':>9} {'p99':>9}   ratio of p50s",
        _timing_row("(a) in process: the call", inner["call"], f"{inner['ratio_call_vs_json_loads']:.2f}x json.loads"),
        _timing_row("    json.loads of the body", inner["json_loads"]),
        _timing_row(
            "(b) over HTTP: patient-view", http["patient-view"], f"{http['ratio_patient_view_vs_echo']:.2f}x echo"
        ),
        _timing_row("    echo of the body", http["echo"]),
    ]


def render_throughput(rows: list[dict]) -> list[str]:
    out = [
        "3. throughput, typical order-select (the same chart) vs echo of its body (wrk)",
        "   conns  order-select: req/s  p50 ms  p99 ms errors    echo: req/s  p50 ms  p99 ms errors   order-select/echo",
    ]
    for r in rows:
        if "skipped" in r:
            out.append(f"   skipped: {r['skipped']}")
            continue
        hook, echo = r["order_select"], r["echo"]
        out.append(
            f"   {r['connections']:>5} {hook['rps']:>19.1f} {hook.get('p50_ms', 0):>7.2f} {hook.get('p99_ms', 0):>7.2f}"
            f" {hook['errors']:>6} {echo['rps']:>14.1f} {echo.get('p50_ms', 0):>7.2f} {echo.get('p99_ms', 0):>7.2f}"
            f" {echo['errors']:>6} {r['ratio_rps']:>18.0%}"
        )
    return out


def render_growth(rows: list[dict]) -> list[str]:
    out = [
        "4. growth curve, patient-view in process, median ms (new chart: another patient every call)",
        "      obs     body  json.loads  new chart  same chart   new/json.loads  same/json.loads  new - json.loads",
    ]
    for r in rows:
        out.append(
            f"   {r['observations']:>6} {r['body_bytes'] / 1e6:>6.2f}MB {r['json_loads']['p50_ms']:>11.2f}"
            f" {r['new_chart']['p50_ms']:>10.2f} {r['same_chart']['p50_ms']:>11.2f}"
            f" {r['ratio_new_chart_vs_json_loads']:>15.2f}x {r['ratio_same_chart_vs_json_loads']:>15.2f}x"
            f" {r['above_json_loads_ms']:>14.2f} ms"
        )
    return out


def _memory_row(label: str, m: dict) -> str:
    mb = 1024 / 1e6  # kB -> MB
    reset = "yes" if m["peak_reset"] else "NO (a start-up peak may hide the call's)"
    return (
        f"     {label:<36} {m['vmrss_before_kb'] * mb:>9.0f} MB {m['vmhwm_after_kb'] * mb:>9.0f} MB"
        f" {m['peak_growth_bytes'] / 1e6:>7.0f} MB {m['ratio_peak_growth_vs_body']:>10.2f}x"
        f" {m['http_call_ms']:>9.0f} ms  {reset}"
    )


def _traced_row(label: str, inner: dict, name: str) -> str:
    return (
        f"     {label:<52} {inner[f'tracemalloc_peak_{name}_bytes'] / 1e6:>7.0f} MB"
        f" {inner[f'tracemalloc_peak_{name}_vs_body']:>7.2f}x"
    )


def render_100k(r: dict) -> list[str]:
    inner, server = r["in_process"], r["server_memory"]
    return [
        f"5. 100,000 Observations, patient-view, {inner['body_bytes'] / 1e6:.1f} MB body",
        f"   time in process (median of {inner['call']['n']}): the call {inner['call']['p50_ms']:.0f} ms,"
        f" json.loads of the body {inner['json_loads']['p50_ms']:.0f} ms: {inner['ratio_call_vs_json_loads']:.2f}x",
        "   peak memory of a fresh server process per call: growth = VmHWM after the call - VmRSS before it",
        f"     {'':<36} {'VmRSS before':>12} {'VmHWM after':>12} {'growth':>10} {'growth/body':>11}"
        f" {'HTTP call':>12}  peak reset",
        _memory_row("patient-view", server["patient_view"]),
        _memory_row("echo of the same body (the floor)", server["echo"]),
        "   tracemalloc's peak in process, Python allocations only (orjson's parser allocates more than",
        "   it touches: tracemalloc counts all of it, RSS only what is touched)",
        _traced_row("the call (incl. the test client's copies of the body)", inner, "call"),
        _traced_row("json.loads of the body", inner, "json_loads"),
        _traced_row("orjson.loads of the body (the service's decoder)", inner, "orjson_loads"),
    ]


def render_no_prefetch(np: dict) -> list[str]:
    if "skipped" in np:
        return [f"6. no-prefetch: skipped: {np['skipped']}"]
    return [
        f"6. no-prefetch ({np['fhir_requests_per_call']} FHIR requests, {np['delay_ms']:.0f} ms delay each): "
        f"hook call p50 {np['hook_call']['p50_ms']:.1f} ms / p99 {np['hook_call']['p99_ms']:.1f} ms; one round trip "
        f"p50 {np['one_round_trip']['p50_ms']:.1f} ms; ratio {np['ratio_vs_one_round_trip_p50']:.2f}x"
    ]


def render_memory(m: dict) -> list[str]:
    return [
        f"7. memory: server peak RSS {m['peak_rss_mb_at_start']:.0f} MB at start-up, "
        f"{m['peak_rss_mb_after_huge']:.0f} MB after sections 1-3 and three {m['huge_body_mb']:.1f} MB order-selects"
    ]


def render_workers(w: dict) -> list[str]:
    out = [
        "8. scaling out, typical order-select (wrk, 1 thread)",
        "   procs  conns   req/s    p50 ms   p99 ms  errors  server CPU (cores)  runs (req/s)",
    ]
    if "skipped" in w:
        return [*out, f"   skipped: {w['skipped']}"]
    echo_header = False
    for r in w["rows"]:
        if r.get("target") == "echo" and not echo_header:
            out.append("   the floor: the echo endpoint on the same servers")
            echo_header = True
        runs = ", ".join(f"{x:.0f}" for x in r.get("rps_runs", []))
        out.append(
            f"   {r['workers']:>5} {r['connections']:>6} {r['rps']:>7.1f} {r.get('p50_ms', 0):>8.2f}"
            f" {r.get('p99_ms', 0):>8.2f} {r['errors']:>7} {r.get('server_cpu_cores', 0):>19.2f}  {runs}"
        )
    ratios = w["throughput_ratio_2_vs_1"]
    paired = ", ".join(f"{x:.2f}" for x in w["paired_ratios_16_connections"])
    out.append(
        f"   throughput, 2 processes vs 1 at 16 connections: {w['paired_ratio_16_connections_median']:.2f}x "
        f"(median of the rounds' ratios: {paired}; medians of the runs: {ratios[16]:.2f}x); "
        f"at 64: {ratios[64]:.2f}x"
    )
    out.append(
        f"   p99 at 64 connections with 2 processes: {w['p99_ms_64_connections_2_workers']:.1f} ms "
        f"(the echo floor: {w['echo_p99_ms_64_connections_2_workers']:.1f} ms)"
    )
    return out


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if unit == "%" else f"{value:.2f}x"


def render_targets(rows: list[dict]) -> list[str]:
    out = [f"{'targets (issue 21), figures of this run':<78} {'measured':>8}  {'target':>9}  met"]
    for number, r in enumerate(rows, 1):
        met = "not measured" if r["met"] is None else "yes" if r["met"] else "no"
        out.append(
            f"   {number}. {r['target']:<72} {_figure(r['measured'], r['unit']):>8}"
            f"  {r['comparison']} {_figure(r['limit'], r['unit']):>6}  {met}"
        )
    return out


def render(results: dict) -> str:
    sections = [
        [
            f"machine: {results['machine']['cpu']} ({results['machine']['cores']} cores), "
            f"Python {results['machine']['python']}{' (--quick)' if results['quick'] else ''}"
        ],
        render_first_look(results["first_look"]),
        render_10k(results["patient_view_10k"]),
        render_throughput(results["throughput"]),
        render_growth(results["growth"]),
        render_100k(results["observations_100k"]),
        render_no_prefetch(results["no_prefetch"]) + render_memory(results["memory"]),
        render_workers(results["workers"]),
        render_targets(results["targets"]),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def run_in_process(results: dict, body_100k: bytes, quick: bool) -> None:
    """Sections 2a, 4 and 5a: one app in this process, set up as the servers run it."""
    with settled_client() as client:
        results["growth"] = bench_growth(client, quick)
        results["patient_view_10k"] = {"in_process": bench_10k_in_process(client, quick)}
        results["observations_100k"] = {"in_process": bench_100k_in_process(client, body_100k, quick)}


def run_over_http(results: dict, quick: bool) -> None:
    """Sections 1, 2b, 3 and 7: one server, fresh at the start (every "new chart" is new to it)."""
    server = Server()
    try:
        results["first_look"] = bench_first_look(server, quick)
        results["patient_view_10k"]["http"] = bench_10k_http(server, quick)
        results["throughput"] = bench_throughput(server, quick)
        results["memory"] = bench_memory(server)
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures")
    args = parser.parse_args(argv)

    results: dict = {"machine": machine(), "quick": args.quick, "payloads_dated": RUN_NOW.isoformat()}
    body_100k = patient_view_body(BIGGEST)
    print("running in process ...", file=sys.stderr)
    run_in_process(results, body_100k, args.quick)
    print("running over HTTP ...", file=sys.stderr)
    run_over_http(results, args.quick)
    print("running 100,000 Observations on a fresh server ...", file=sys.stderr)
    results["observations_100k"]["server_memory"] = bench_100k_server_memory(body_100k)
    del body_100k
    print("running no-prefetch ...", file=sys.stderr)
    results["no_prefetch"] = bench_no_prefetch(args.quick)
    print("running 1 and 2 worker processes ...", file=sys.stderr)
    results["workers"] = bench_workers(args.quick)
    results["targets"] = targets(results)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
