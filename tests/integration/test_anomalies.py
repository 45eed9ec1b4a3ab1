"""Anomaly detection on production reads: a new source address, reads outside the working
hours, bursts; ``anomaly.detected`` entries and the webhook that receives them."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from coffer.config import Settings
from coffer.services.anomalies import AnomalyDetector, burst_rule
from tests.integration.team_helpers import API
from tests.integration.test_webhooks import Acme, OpenAcme, Receiver, acme_opener

STAGING_SECRET = f"{API}/projects/app/environments/staging/secrets/db/password"


@pytest.fixture
def open_acme(settings: Settings) -> Iterator[OpenAcme]:
    """Opens organization acme on the backend under test."""
    with acme_opener(settings) as opener:
        yield opener


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver."""
    made = Receiver()
    yield made
    made.close()


def detect(acme: Acme) -> list[dict[str, Any]]:
    """Seals, runs the detector over everything, and returns the anomaly.detected entries'
    metadata, oldest first."""
    acme.services.audit.sealer.seal()
    while acme.services.consumers.anomalies.step():
        pass
    return [meta for action, meta in acme.actions() if action == "anomaly.detected"]


def test_a_read_from_a_new_address_is_flagged_and_reaches_the_webhook(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """An identity's first address is only remembered; a later read from another address
    records anomaly.detected (new_address) and the subscribed webhook receives it."""
    acme = open_acme()
    hook = acme.call("POST", f"{API}/webhooks", json={"url": receiver.url, "events": ["anomaly.*"]})
    assert hook.status_code == 201
    acme.read("203.0.113.10")
    acme.read("203.0.113.10")
    assert detect(acme) == []
    acme.read("198.51.100.7")
    found = detect(acme)
    assert [meta["reason"] for meta in found] == ["new_address"]
    meta = found[0]
    query = {"action": "secret.read", "limit": "1"}
    [read] = acme.call("GET", f"{API}/audit", params=query).json()["entries"]
    assert meta["entry_id"] == read["id"] and read["source_ip"] == "198.51.100.7"
    assert meta["source_ip"] == "198.51.100.7" and meta["known_addresses"] == 1
    assert (meta["actor_id"], meta["actor_kind"]) == (read["actor"]["id"], "user")
    acme.read("198.51.100.7")
    assert len(detect(acme)) == 1, "a known address is not flagged again"
    acme.deliver()
    [request] = receiver.wait_for(1)
    body = json.loads(request.body)
    entry = body["entry"]
    assert body["event"] == "anomaly.detected" and entry["action"] == "anomaly.detected"
    assert entry["actor"] == {"id": None, "kind": "system"}
    assert (entry["project"], entry["environment"], entry["key"]) == (
        "app",
        "production",
        "db/password",
    )
    assert entry["metadata"]["reason"] == "new_address"


def test_reads_outside_working_hours_are_flagged(open_acme: OpenAcme) -> None:
    """With working hours set through the API, a production read outside them is flagged
    with the hours and the local time; inside them, or with none set, nothing is."""
    acme = open_acme()
    acme.read()
    assert detect(acme) == []
    hour = datetime.now(UTC).hour
    inside = f"Mon-Sun {(hour - 1) % 24:02d}:00-{(hour + 2) % 24:02d}:00 UTC"
    outside = f"mon-sun {(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00 Europe/London"
    answer = acme.call("PATCH", f"{API}/org", json={"working_hours": inside})
    assert answer.status_code == 200 and answer.json()["working_hours"] == inside
    acme.read()
    assert detect(acme) == []
    answer = acme.call("PATCH", f"{API}/org", json={"working_hours": outside})
    stored = answer.json()["working_hours"]
    assert stored == outside.replace("mon-sun", "Mon-Sun")
    assert acme.call("GET", f"{API}/org").json()["working_hours"] == stored
    acme.read()
    [meta] = detect(acme)
    assert meta["reason"] == "outside_working_hours" and meta["working_hours"] == stored
    assert meta["local_time"][:3] in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    acme.call("GET", STAGING_SECRET)  # missing in staging: a failed, non-production read
    cleared = acme.call("PATCH", f"{API}/org", json={"working_hours": None})
    assert cleared.json()["working_hours"] is None
    acme.read()
    assert len(detect(acme)) == 1


def test_bad_working_hours_are_refused_and_change_nothing(open_acme: OpenAcme) -> None:
    """Malformed working hours answer 400 naming working_hours; neither they nor a
    require_mfa sent with them are stored."""
    acme = open_acme()
    for text in ("Mon-Fri 9-18", "Someday 09:00-18:00", "Mon-Fri 09:00-18:00 Mars/Base"):
        response = acme.call(
            "PATCH", f"{API}/org", json={"working_hours": text, "require_mfa": True}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "working_hours"
    shown = acme.call("GET", f"{API}/org").json()
    assert shown["working_hours"] is None and shown["require_mfa"] is False
    empty = acme.call("PATCH", f"{API}/org", json={})
    assert empty.status_code == 400


def test_a_burst_of_reads_is_flagged_once_per_window(open_acme: OpenAcme) -> None:
    """More reads than COFFER_ANOMALY_READ_BURST in one window record one read_burst, on
    the first read over the limit; a fresh detector over the same log adds nothing."""
    acme = open_acme(anomaly_read_burst="3/hour")
    left = 3600 - time.time() % 3600
    if left < 5:
        time.sleep(left + 0.1)  # keep the reads in one window
    for _ in range(6):
        acme.read()
    found = detect(acme)
    assert [meta["reason"] for meta in found] == ["read_burst"]
    meta = found[0]
    assert (meta["reads"], meta["limit"], meta["window_seconds"]) == (4, 3, 3600)
    assert meta["window_start"] == math.floor(time.time() / 3600) * 3600
    reads = [m for a, m in acme.actions() if a == "secret.read"]
    assert len(reads) == 6
    again = AnomalyDetector(
        acme.services.engine,
        acme.services.audit,
        acme.writer(),
        production_environments=("production",),
        burst=burst_rule("3/hour"),
    )
    assert again.step() is False
    assert len(detect(acme)) == 1


def test_staging_reads_and_failed_reads_are_not_watched(open_acme: OpenAcme) -> None:
    """Reads outside the production environments and failed reads raise no anomaly, even
    from new addresses and in a burst."""
    acme = open_acme(anomaly_read_burst="1/hour")
    acme.call("PUT", STAGING_SECRET, json={"value": "v"})
    acme.read("203.0.113.10", STAGING_SECRET)
    acme.read("198.51.100.7", STAGING_SECRET)
    acme.read("198.51.100.8", STAGING_SECRET)
    missing = acme.call("GET", f"{API}/projects/app/environments/production/secrets/nope")
    assert missing.status_code == 404
    assert detect(acme) == []


def test_a_server_started_on_an_existing_log_does_not_replay_its_history(
    open_acme: OpenAcme,
) -> None:
    """Reads made before the background jobs first started (an upgraded vault) are never
    examined, while reads made after the start are (the first one only remembered)."""
    acme = open_acme()
    acme.read("203.0.113.10")
    acme.read("198.51.100.7")  # would be a new_address anomaly if history were replayed
    acme.services.audit.sealer.seal()
    acme.services.background.before_start_only()
    assert detect(acme) == []
    acme.read("192.0.2.55")
    assert detect(acme) == []
    acme.read("192.0.2.66")
    assert [meta["reason"] for meta in detect(acme)] == ["new_address"]
