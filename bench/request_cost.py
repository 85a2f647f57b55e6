"""What one hook call costs compared with merely decoding its JSON body.

    .venv/bin/python -m bench.request_cost [--observations 10000] [--runs 30]

Builds a request whose prefetch holds N Observations (10,000 is about 4 MB; bench/payloads.py
makes a dialysis patient with calciphylaxis, so the checks do real work and cards come back) and
prints the median time of:

* ``json.loads`` of the body: the floor no implementation can beat (issue 3 asks for at most 3x);
* ``orjson.loads`` of the body: the decoder the service itself uses;
* full handling through the Flask test client: decode, validate, resolve prefetch, build the
  record, run the checks, render and encode the cards (authentication off, no network).

The app is set up as the servers run it (bench/inprocess.py): after create_app and a warm-up call
of each hook, its start-up heap is settled (`cds_service.http.server.settle_heap()`), and both
decoders are timed in the same process, under the same conditions.

Only the ratios mean anything; absolute times depend on the machine. Not a test: no pass/fail.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from datetime import UTC, datetime

import orjson

from bench import payloads
from bench.inprocess import settled_client

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def median_seconds(fn, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    gc.collect()
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def measure(hook: str, observations: int, runs: int, client) -> dict[str, float]:
    request = (
        payloads.order_select(observations, NOW) if hook == "order-select" else payloads.patient_view(observations, NOW)
    )
    body = payloads.body(request)
    path = f"/cds-services/calciphylaxis-{hook}"

    def handle():
        response = client.post(path, data=body, content_type="application/json")
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        return response

    cards = len(handle().get_json()["cards"])
    floor = median_seconds(lambda: json.loads(body), runs)
    fast_floor = median_seconds(lambda: orjson.loads(body), runs)
    full = median_seconds(handle, runs)
    return {"bytes": len(body), "cards": cards, "json_loads": floor, "orjson_loads": fast_floor, "full": full}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)

    with settled_client(now=lambda: NOW) as client:
        print(f"{args.observations:,} Observations in prefetch, median of {args.runs} runs")
        print(
            f"{'hook':<14}{'body':>9}{'cards':>7}{'json.loads':>13}{'orjson':>10}{'full':>10}"
            f"{'full/json.loads':>17}{'full/orjson':>13}"
        )
        for hook in ("order-select", "patient-view"):
            m = measure(hook, args.observations, args.runs, client)
            print(
                f"{hook:<14}{m['bytes'] / 1e6:>7.2f}MB{m['cards']:>7}"
                f"{m['json_loads'] * 1e3:>11.1f}ms{m['orjson_loads'] * 1e3:>8.1f}ms{m['full'] * 1e3:>8.1f}ms"
                f"{m['full'] / m['json_loads']:>16.2f}x{m['full'] / m['orjson_loads']:>12.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
