"""Benchmark the service against the floor, and print a table (also written as JSON).

    make bench            # or: .venv/bin/python -m bench.run [--quick] [--json PATH]

1. In-process: json.loads of the body alone vs full handling through the Flask test client, for
   typical / large / huge payloads (median, p99, ratio).
2. Over HTTP against the production server started as the README starts it (`calciphylaxis-cds
   serve`, waitress): sequential p50/p99 for order-select, patient-view and the echo endpoint (which
   only decodes the body), then throughput and errors at concurrency 1, 4 and 16 with wrk.
3. No-prefetch path: a loopback FHIR server that delays every answer by 50 ms; a hook call that
   must fetch the prefetch keys itself. Parallel fetching should keep it near one delay.
4. Memory: peak RSS (VmHWM) of the server process after the huge payloads.
5. Scaling out: the same typical order-select under wrk against the server with 1 and with 2
   worker processes (`serve --workers N`), at 16 and 64 connections: throughput, p50/p99, errors,
   and the 2-process/1-process throughput ratio (on 2 cores, with wrk on the same cores).

Only ratios measured in one run mean anything: absolute times vary between machines.
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import orjson
import requests

from bench import payloads

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": p99 * 1000, "n": len(ordered)}


def repeat(fn, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


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


def iterations(size: str, quick: bool) -> int:
    base = {"typical": 200, "large": 40, "huge": 10}[size]
    return max(5, base // 4) if quick else base


# --------------------------------------------------------------------------------------------
# 1. in-process
# --------------------------------------------------------------------------------------------


def bench_in_process(quick: bool) -> list[dict]:
    from cds_service.config import Settings
    from cds_service.http.app import create_app

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(feedback_db=Path(tmp) / "f.db", log_level="WARNING"))
        client = app.test_client()
        for size, observations in payloads.SIZES.items():
            body = payloads.body(payloads.order_select(observations))
            n = iterations(size, quick)
            decode = repeat(lambda: orjson.loads(body), n)
            stdlib = repeat(lambda: json.loads(body), n)

            def handle():
                response = client.post(
                    "/cds-services/calciphylaxis-order-select", data=body, content_type="application/json"
                )
                assert response.status_code == 200, response.get_data(as_text=True)[:300]

            full = repeat(handle, n)
            cards = len(
                client.post(
                    "/cds-services/calciphylaxis-order-select", data=body, content_type="application/json"
                ).get_json()["cards"]
            )
            row = {
                "size": size,
                "observations": observations,
                "body_bytes": len(body),
                "cards": cards,
                "json_loads": percentiles(stdlib),
                "orjson_loads": percentiles(decode),
                "full_handling": percentiles(full),
                "ratio_full_vs_json_loads": statistics.median(full) / statistics.median(stdlib),
                "ratio_full_vs_orjson_loads": statistics.median(full) / statistics.median(decode),
            }
            if size == "typical":
                # Another patient's chart every call: nothing the service has read before.
                fresh = iter([payloads.body(payloads.order_select(observations, chart=i + 1)) for i in range(n + 3)])

                def handle_new_chart():
                    response = client.post(
                        "/cds-services/calciphylaxis-order-select", data=next(fresh), content_type="application/json"
                    )
                    assert response.status_code == 200, response.get_data(as_text=True)[:300]

                row["full_handling_new_chart"] = percentiles(repeat(handle_new_chart, n))
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# 2. over HTTP
# --------------------------------------------------------------------------------------------


class Server:
    """The service started exactly as the README starts it: the console script under waitress."""

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

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        self.tmp.cleanup()


def _alternating(server: Server, session: requests.Session, calls: dict, n: int, warmup: int = 3) -> dict:
    """``calls``: name -> (bodies, path). The calls alternate, one of each in turn, so that drift in
    the machine's speed hits all of them alike; a name with several bodies sends the next each time."""
    headers = {"Content-Type": "application/json"}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(n + warmup):
        for name, (variants, path) in calls.items():
            body = variants[i % len(variants)]
            start = time.perf_counter()
            response = session.post(server.base + path, data=body, headers=headers)
            elapsed = time.perf_counter() - start
            assert response.status_code == 200, response.text[:300]
            if i >= warmup:
                samples[name].append(elapsed)
    return {name: percentiles(values) for name, values in samples.items()}


def bench_http_sequential(server: Server, quick: bool) -> list[dict]:
    """Order-select, patient-view and echo alternate. For the typical size, a second run
    alternates order-select with another patient's chart every call (a chart the service has not
    seen before) and echo, so that each comparison has its own floor, measured beside it."""
    session = requests.Session()
    rows = []
    for size, observations in payloads.SIZES.items():
        n = iterations(size, quick)
        echo = ([payloads.body(payloads.order_select(observations))], "/bench/echo")
        row: dict = {"size": size, "observations": observations}
        row.update(
            _alternating(
                server,
                session,
                {
                    "order-select": (
                        [payloads.body(payloads.order_select(observations))],
                        "/cds-services/calciphylaxis-order-select",
                    ),
                    "patient-view": (
                        [payloads.body(payloads.patient_view(observations))],
                        "/cds-services/calciphylaxis-patient-view",
                    ),
                    "echo": echo,
                },
                n,
            )
        )
        row["ratio_order_select_vs_echo_p50"] = row["order-select"]["p50_ms"] / row["echo"]["p50_ms"]
        row["ratio_patient_view_vs_echo_p50"] = row["patient-view"]["p50_ms"] / row["echo"]["p50_ms"]
        if size == "typical":
            fresh = _alternating(
                server,
                session,
                {
                    "order-select (new chart)": (
                        [payloads.body(payloads.order_select(observations, chart=i + 1)) for i in range(n + 3)],
                        "/cds-services/calciphylaxis-order-select",
                    ),
                    "echo": echo,
                },
                n,
            )
            row["order-select (new chart)"] = fresh["order-select (new chart)"]
            row["echo (beside new chart)"] = fresh["echo"]
            row["ratio_new_chart_vs_echo_p50"] = fresh["order-select (new chart)"]["p50_ms"] / fresh["echo"]["p50_ms"]
        rows.append(row)
    return rows


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


def bench_http_load(server: Server, quick: bool) -> list[dict]:
    if not shutil.which("wrk"):
        return [{"skipped": "wrk not installed (make bench installs it from Debian's packages)"}]
    seconds = 2 if quick else 5
    body = payloads.body(payloads.order_select(payloads.SIZES["typical"]))
    rows = []
    for target, path in (("order-select", "/cds-services/calciphylaxis-order-select"), ("echo", "/bench/echo")):
        for connections in (1, 4, 16):
            rows.append({"target": target, **run_wrk(server.base + path, body, connections, seconds)})
    return rows


def bench_memory(server: Server) -> dict:
    """Peak RSS (VmHWM) of the one server process: at start-up, and after every run above plus
    three more huge payloads (the sequential runs already sent huge payloads many times)."""
    session = requests.Session()
    body = payloads.body(payloads.order_select(payloads.SIZES["huge"]))
    for _ in range(3):
        session.post(
            server.base + "/cds-services/calciphylaxis-order-select",
            data=body,
            headers={"Content-Type": "application/json"},
        )
    return {
        "peak_rss_mb_at_start": server.rss_at_start_mb,
        "peak_rss_mb_after_huge": server.peak_rss_mb(),
        "huge_body_mb": len(body) / 1e6,
    }


# --------------------------------------------------------------------------------------------
# 5. scaling out: 1 and 2 worker processes
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
        return {"skipped": "wrk not installed (make bench installs it from Debian's packages)"}
    seconds, rounds = (3, 1) if quick else (8, 5)
    body = payloads.body(payloads.order_select(payloads.SIZES["typical"]))
    servers = {1: Server(workers=1), 2: Server(workers=2)}
    rows = []
    try:
        urls = {w: s.base + "/cds-services/calciphylaxis-order-select" for w, s in servers.items()}
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
            echo = _wrk_with_cpu(servers[workers], servers[workers].base + "/bench/echo", body, 64, seconds)
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
# 3. no-prefetch path
# --------------------------------------------------------------------------------------------


def bench_no_prefetch(quick: bool) -> dict:
    try:
        from tests.fhir_server import FhirTestServer  # the loopback FHIR server of the test suite
    except ImportError as exc:
        return {"skipped": f"loopback FHIR server unavailable: {exc}"}
    delay = 0.05
    request = payloads.order_select(payloads.SIZES["typical"])
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
            url = server.base + "/cds-services/calciphylaxis-order-select"
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


def render(results: dict) -> str:
    out = [
        f"machine: {results['machine']['cpu']} ({results['machine']['cores']} cores), "
        f"Python {results['machine']['python']}",
        "",
    ]
    out.append("1. in-process (ms)        body    json.loads p50/p99   full p50/p99        ratio  cards")
    for r in results["in_process"]:
        out.append(
            f"   {r['size']:<8} {r['observations']:>6} obs {r['body_bytes'] / 1e6:>5.2f} MB"
            f"   {r['json_loads']['p50_ms']:>7.2f}/{r['json_loads']['p99_ms']:<7.2f}"
            f"   {r['full_handling']['p50_ms']:>7.2f}/{r['full_handling']['p99_ms']:<7.2f}"
            f"   {r['ratio_full_vs_json_loads']:>5.2f}x ({r['ratio_full_vs_orjson_loads']:.1f}x orjson) {r['cards']:>4}"
        )
        if "full_handling_new_chart" in r:
            fresh = r["full_handling_new_chart"]
            out.append(
                f"   {r['size']:<8} another patient's chart every call"
                f"   {fresh['p50_ms']:>7.2f}/{fresh['p99_ms']:<7.2f}"
                f"   {fresh['p50_ms'] / r['json_loads']['p50_ms']:>5.2f}x"
            )
    out += ["", "2a. HTTP sequential (ms)  order-select p50/p99  patient-view p50/p99  echo p50/p99     os/echo"]
    for r in results["http_sequential"]:
        out.append(
            f"   {r['size']:<8} {r['observations']:>6} obs"
            f"   {r['order-select']['p50_ms']:>7.2f}/{r['order-select']['p99_ms']:<7.2f}"
            f"   {r['patient-view']['p50_ms']:>7.2f}/{r['patient-view']['p99_ms']:<7.2f}"
            f"   {r['echo']['p50_ms']:>6.2f}/{r['echo']['p99_ms']:<7.2f}"
            f"   {r['ratio_order_select_vs_echo_p50']:>5.2f}x"
        )
        if "order-select (new chart)" in r:
            fresh = r["order-select (new chart)"]
            out.append(
                f"   {r['size']:<8} order-select, another patient's chart every call"
                f"  {fresh['p50_ms']:>6.2f}/{fresh['p99_ms']:<7.2f}  {r['ratio_new_chart_vs_echo_p50']:>5.2f}x"
            )
    out += ["", "2b. HTTP load, typical payload (wrk)   conns   req/s    p50 ms   p99 ms  errors"]
    for r in results["http_load"]:
        if "skipped" in r:
            out.append(f"   skipped: {r['skipped']}")
            continue
        out.append(
            f"   {r['target']:<30} {r['connections']:>6} {r['rps']:>8.1f} {r.get('p50_ms', 0):>8.2f}"
            f" {r.get('p99_ms', 0):>8.2f} {r['errors']:>7}"
        )
    np = results["no_prefetch"]
    out += [""]
    if "skipped" in np:
        out.append(f"3. no-prefetch: skipped: {np['skipped']}")
    else:
        out.append(
            f"3. no-prefetch ({np['fhir_requests_per_call']} FHIR requests, {np['delay_ms']:.0f} ms delay each): "
            f"hook call p50 {np['hook_call']['p50_ms']:.1f} ms / p99 {np['hook_call']['p99_ms']:.1f} ms; one round trip "
            f"p50 {np['one_round_trip']['p50_ms']:.1f} ms; ratio {np['ratio_vs_one_round_trip_p50']:.2f}x"
        )
    m = results["memory"]
    out.append(
        f"4. memory: server peak RSS {m['peak_rss_mb_at_start']:.0f} MB at start-up, "
        f"{m['peak_rss_mb_after_huge']:.0f} MB after all runs incl. {m['huge_body_mb']:.1f} MB payloads"
    )
    w = results.get("workers", {})
    out += [
        "",
        "5. scaling out, typical order-select (wrk, 1 thread)",
        "   procs  conns   req/s    p50 ms   p99 ms  errors  server CPU (cores)  runs (req/s)",
    ]
    echo_header = False
    if "skipped" in w:
        out.append(f"   skipped: {w['skipped']}")
    elif w:
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
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures")
    args = parser.parse_args(argv)

    results = {"machine": machine(), "quick": args.quick}
    print("running in-process ...", file=sys.stderr)
    results["in_process"] = bench_in_process(args.quick)
    print("running over HTTP ...", file=sys.stderr)
    server = Server()
    try:
        results["http_sequential"] = bench_http_sequential(server, args.quick)
        results["http_load"] = bench_http_load(server, args.quick)
        results["memory"] = bench_memory(server)
    finally:
        server.close()
    print("running no-prefetch ...", file=sys.stderr)
    results["no_prefetch"] = bench_no_prefetch(args.quick)
    print("running 1 and 2 worker processes ...", file=sys.stderr)
    results["workers"] = bench_workers(args.quick)

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
