"""The app in this process, set up as the service's servers run it (for bench.run and bench.request_cost).

`calciphylaxis-cds serve` (and each gunicorn worker) settles its start-up heap before its first
call: `cds_service.http.server.settle_heap()` runs `gc.collect()` then `gc.freeze()`, so that the
cyclic garbage collector stops walking the app's long-lived objects every time a call's
allocations trigger a collection. In-process measurements do the same, right after `create_app`
and a warm-up call of each hook, so that their figures match what the server does. `json.loads`
(the floor) is measured afterwards in the same process, under the same conditions: the same
frozen heap, the same collector thresholds.

The log level is WARNING (the servers log one INFO line per call, through a queue to a listener
thread: off the calling thread, a few hundredths of a millisecond).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import payloads

HOOK_PATHS = {
    "order-select": "/cds-services/calciphylaxis-order-select",
    "patient-view": "/cds-services/calciphylaxis-patient-view",
}
# Large enough for the 100,000-Observation body (about 60 MB).
MAX_BODY_BYTES = 256 * 1024 * 1024


def call(client: Any, hook: str, body: bytes) -> Any:
    """One hook call through the Flask test client; anything but 200 stops the benchmark."""
    response = client.post(HOOK_PATHS[hook], data=body, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response


@contextmanager
def settled_client(now: Callable[[], datetime] | None = None) -> Iterator[Any]:
    """A Flask test client of an app made by `create_app`, warmed up by one typical call of each
    hook (the repeated chart, chart 0), then with its start-up heap settled (`settle_heap`)."""
    from cds_service.config import Settings
    from cds_service.http.app import create_app
    from cds_service.http.server import settle_heap

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(feedback_db=Path(tmp) / "f.db", log_level="WARNING", max_body_bytes=MAX_BODY_BYTES)
        client = create_app(settings, now=now).test_client()
        when = now() if now else None
        typical = payloads.SIZES["typical"]
        call(client, "order-select", payloads.body(payloads.order_select(typical, when)))
        call(client, "patient-view", payloads.body(payloads.patient_view(typical, when)))
        settle_heap()
        yield client
