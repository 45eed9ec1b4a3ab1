"""Webhooks against a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL: creation and
the SSRF guard, signed deliveries, filters, redirects, retries with backoff, the delivery log.

The consumers are driven by calling their step functions (the app runs without its lifespan,
so no background job races the test).
"""

from __future__ import annotations

import hmac
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.audit.writer import AuditWriter
from coffer.bootstrap import (
    audit_keys_for,
    build_services,
    initialise_vault,
    load_settings_root_key,
)
from coffer.config import Settings
from coffer.domain.models import CallContext
from coffer.services.container import Services
from coffer.services.webhook_delivery import WebhookSender
from coffer.services.webhooks import WebhookPoster, verify_signature
from coffer.storage.tables import audit_log
from coffer.storage.webhook_store import find_webhook
from tests.integration.api_helpers import all_rows_text
from tests.integration.team_helpers import (
    API,
    CLIENT_ADDRESS,
    OWNER_EMAIL,
    PASSWORD,
    SECRET,
    bearer,
    create_second_org,
    login,
)

HOOKS = f"{API}/webhooks"
WAIT = 5.0


@dataclass
class Received:
    """One request a receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """An HTTP server on 127.0.0.1 that records each POST and answers ``status`` (a 3xx
    points elsewhere); in mode ``hang`` it holds each request until ``release`` is set."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.hang = False
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.requests.append(Received(self.path, headers, body, time.monotonic()))
                if receiver.hang:
                    receiver.release.wait(10)
                self.send_response(receiver.status)
                if 300 <= receiver.status < 400:
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keeps the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Received]:
        """Returns the requests once there are ``count`` (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.requests) >= count, f"got {len(self.requests)} of {count} requests"
        return list(self.requests)

    def close(self) -> None:
        """Stops serving (a held request is released first)."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver."""
    made = Receiver()
    yield made
    made.close()


@dataclass
class Acme:
    """Organization acme (project ``app``, secret ``SECRET``) over HTTP without background
    jobs, its owner's token, and the consumers to step by hand."""

    services: Services
    settings: Settings
    client: TestClient
    owner: str
    clients: dict[str, TestClient] = field(default_factory=dict)

    def call(self, method: str, url: str, token: str | None = None, **kwargs: Any) -> Any:
        """A request as the owner (or with ``token``)."""
        headers = bearer(token or self.owner)
        return self.client.request(method, url, headers=headers, **kwargs)

    def read(
        self, address: str = CLIENT_ADDRESS, url: str = SECRET, token: str | None = None
    ) -> Any:
        """Reads a secret from client ``address``, asserting 200."""
        if address not in self.clients:
            app = self.client.app
            self.clients[address] = TestClient(app, client=(address, 50000))
        response = self.clients[address].get(url, headers=bearer(token or self.owner))
        assert response.status_code == 200, response.text
        return response

    def writer(self) -> AuditWriter:
        """An audit writer of this vault."""
        return AuditWriter(audit_keys_for(load_settings_root_key(self.settings)))

    def sender(self, **options: Any) -> WebhookSender:
        """A webhook sender with ``options`` (such as a short backoff)."""
        return WebhookSender(self.services.engine, self.services.webhooks, self.writer(), **options)

    def dispatch(self) -> None:
        """Seals what is waiting and turns it into pending deliveries."""
        self.services.audit.sealer.seal()
        while self.services.consumers.dispatcher.step():
            pass

    def deliver(self) -> None:
        """Dispatches and sends what is due with the vault's own sender."""
        self.dispatch()
        self.services.consumers.sender.step()

    def actions(self) -> list[tuple[str, dict[str, Any]]]:
        """Every audit entry's action and metadata, oldest first."""
        with self.services.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log.c.action, audit_log.c.metadata).order_by(audit_log.c.seq)
            )
            return [(str(action), dict(metadata)) for action, metadata in rows]


OpenAcme = Callable[..., Acme]


@contextmanager
def acme_opener(settings: Settings) -> Iterator[OpenAcme]:
    """Initialises acme once and yields a function that opens it with settings overrides
    (127.0.0.1 is on the outbound allow-list unless overridden); closed at the end."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    opened: list[Services] = []

    def open_it(**overrides: Any) -> Acme:
        changed = settings.with_overrides(**{"outbound_allow": ("127.0.0.1",), **overrides})
        services = build_services(changed)
        opened.append(services)
        app = create_app(services, max_body_bytes=changed.max_body_bytes)
        client = TestClient(app, base_url="http://127.0.0.1", client=(CLIENT_ADDRESS, 50000))
        owner = login(client, OWNER_EMAIL)["token"]
        client.post(f"{API}/projects", json={"name": "app"}, headers=bearer(owner))
        client.put(SECRET, json={"value": "s3cret-value"}, headers=bearer(owner))
        return Acme(services, changed, client, owner)

    try:
        yield open_it
    finally:
        for services in opened:
            services.close()


@pytest.fixture
def open_acme(settings: Settings) -> Iterator[OpenAcme]:
    """Opens acme on the backend under test (see ``acme_opener``)."""
    with acme_opener(settings) as opener:
        yield opener


def add_hook(acme: Acme, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    """Creates a webhook as the owner, asserting 201."""
    response = acme.call("POST", HOOKS, json={"url": url, "events": events, **extra})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(acme: Acme, hook_id: str, **params: Any) -> list[dict[str, Any]]:
    """The webhook's delivery log as the API shows it."""
    response = acme.call("GET", f"{HOOKS}/{hook_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["deliveries"]
    return rows


def test_secret_is_shown_once_and_stored_nowhere_in_clear(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """The creation answer holds a whsec_ secret that no listing, audit entry, stored row or
    repr shows; the audit entry names the endpoint's origin but not its path or query."""
    acme = open_acme()
    made = add_hook(acme, f"{receiver.url}/in/tok-path?key=tok-query", ["secret.*"])
    secret = made["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    listed = acme.call("GET", HOOKS).json()["webhooks"]
    assert [hook["id"] for hook in listed] == [made["id"]]
    assert "secret" not in listed[0] and secret not in str(listed)
    assert secret not in all_rows_text(acme.services.engine)
    created = [meta for action, meta in acme.actions() if action == "webhook.created"]
    assert created == [{"webhook_id": made["id"], "target": receiver.url, "events": "secret.*"}]
    assert "tok-path" not in str(created) and "tok-query" not in str(created)
    with acme.services.engine.connect() as conn:
        row = find_webhook(conn, made["id"])
    assert row is not None and acme.services.webhooks.secret_of(row) == secret
    assert secret not in repr(row) and "secret_sealed" not in repr(row)


def test_secret_reaches_no_log_error_or_repr(
    open_acme: OpenAcme, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating, testing and delivering (successfully and not) never puts the signing secret
    in a log record, a delivery error, an audit entry or a repr."""
    caplog.set_level(logging.DEBUG)
    acme = open_acme()
    ctx = CallContext(actor=acme.services.auth.authenticate(acme.owner), source_ip="127.0.0.1")
    created = acme.services.webhooks.create(ctx, receiver.url, ["secret.read"])
    assert created.secret not in repr(created) and created.secret not in str(created)
    assert acme.services.webhooks.test(ctx, created.info.id).delivered
    acme.read()
    acme.deliver()
    receiver.status = 500
    acme.read()
    acme.dispatch()
    acme.sender(max_attempts=1).step()
    logs = deliveries(acme, created.info.id)
    assert {log["state"] for log in logs} == {"delivered", "failed"}
    assert created.secret not in caplog.text
    assert created.secret not in json.dumps(logs)
    assert created.secret not in json.dumps(acme.actions())
    assert created.secret not in repr(acme.services.webhooks)


REFUSED = [
    ("http://127.0.0.1:{port}/hook", "loopback"),
    ("http://localhost:{port}/hook", "loopback"),
    ("http://[::1]:{port}/", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("ftp://127.0.0.1/hook", "http:// or https://"),
    ("http://user:pw@example.test/", "user name or password"),
]


def test_private_and_metadata_urls_are_refused_without_the_allow_list(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """Without COFFER_OUTBOUND_ALLOW, loopback, private and metadata URLs (and non-HTTP
    ones) are refused with 400 naming ``url`` and the rule; nothing is stored."""
    acme = open_acme(outbound_allow=())
    for url, rule in REFUSED:
        response = acme.call(
            "POST", HOOKS, json={"url": url.format(port=receiver.port), "events": ["*"]}
        )
        assert response.status_code == 400, (url, response.text)
        error = response.json()["error"]
        assert error["field"] == "url" and rule in error["message"], (url, error)
    assert acme.call("GET", HOOKS).json()["webhooks"] == []
    assert "webhook.created" not in [action for action, _ in acme.actions()]


def test_bad_events_descriptions_and_projects_are_refused(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """Unknown events, an empty list, a long description and a missing project are refused
    naming the field."""
    acme = open_acme()
    for body, status, named in (
        ({"events": ["secret.reed"]}, 400, "events"),
        ({"events": []}, 400, "events"),
        ({"events": ["*"], "description": "d" * 201}, 400, "description"),
        ({"events": ["*"], "project": "nosuch"}, 404, "project"),
    ):
        response = acme.call("POST", HOOKS, json={"url": receiver.url, **body})
        assert response.status_code == status, response.text
        assert response.json()["error"]["field"] == named
    assert acme.call("GET", HOOKS).json()["webhooks"] == []


def test_delivery_is_signed_and_the_signature_verifies_only_with_the_secret(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """A secret read reaches the receiver as signed JSON: the shown secret verifies it,
    another secret or a timestamp outside the replay window does not; the delivery log
    records status and latency."""
    acme = open_acme()
    made = add_hook(acme, f"{receiver.url}/hook", ["secret.read"])
    acme.read()
    acme.deliver()
    [request] = receiver.wait_for(1)
    headers = request.headers
    assert request.path == "/hook" and headers["content-type"] == "application/json"
    assert headers["x-coffer-event"] == "secret.read"
    stamp, signature = headers["x-coffer-timestamp"], headers["x-coffer-signature"]
    assert signature.startswith("sha256=")
    now = time.time()
    expected = hmac.new(made["secret"].encode(), f"{stamp}.".encode() + request.body, "sha256")
    assert signature == f"sha256={expected.hexdigest()}"
    assert abs(int(stamp) - now) < 5
    assert verify_signature(made["secret"], stamp, request.body, signature, now)
    assert not verify_signature("whsec_other", stamp, request.body, signature, now)
    assert not verify_signature(made["secret"], stamp, request.body + b" ", signature, now)
    assert not verify_signature(made["secret"], stamp, request.body, signature, now + 301)
    body = json.loads(request.body)
    assert body["id"] == headers["x-coffer-delivery"] and body["event"] == "secret.read"
    entry = body["entry"]
    assert (entry["action"], entry["project"], entry["environment"], entry["key"]) == (
        "secret.read",
        "app",
        "production",
        "db/password",
    )
    assert "s3cret-value" not in request.body.decode()
    [log] = deliveries(acme, made["id"])
    assert (log["state"], log["attempts"], log["status_code"]) == ("delivered", 1, 200)
    assert log["entry_id"] == entry["id"] and log["latency_ms"] > 0 and log["error"] is None


def test_event_and_project_filters_and_other_organizations(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """A webhook gets only its patterns' events, only from its project, and never another
    organization's events."""
    acme = open_acme()
    acme.call("POST", f"{API}/projects", json={"name": "other"})
    add_hook(acme, f"{receiver.url}/app", ["secret.*"], project="app")
    add_hook(acme, f"{receiver.url}/members", ["member.invited"])
    acme.call("PUT", f"{API}/projects/other/environments/production/secrets/k", json={"value": "v"})
    acme.call("PUT", f"{API}/projects/app/environments/staging/secrets/k", json={"value": "v"})
    acme.call("POST", f"{API}/members/invite", json={"email": "new@acme.test", "role": "viewer"})
    create_second_org(acme.services, acme.settings, "rival", "owner@rival.test")
    rival = login(acme.client, "owner@rival.test")["token"]
    acme.call("POST", f"{API}/projects", token=rival, json={"name": "app"})
    acme.call(
        "POST",
        f"{API}/members/invite",
        token=rival,
        json={"email": "x@rival.test", "role": "viewer"},
    )
    acme.deliver()
    receiver.wait_for(2)
    time.sleep(0.1)
    seen = sorted((r.path, json.loads(r.body)["event"]) for r in receiver.requests)
    assert seen == [("/app", "secret.created"), ("/members", "member.invited")]


def test_redirects_are_not_followed(open_acme: OpenAcme, receiver: Receiver) -> None:
    """A 302 answer is a failed delivery: the test ping reports it and the redirect target
    is never asked."""
    acme = open_acme()
    made = add_hook(acme, receiver.url, ["*"])
    receiver.status = 302
    tested = acme.call("POST", f"{HOOKS}/{made['id']}/test")
    assert tested.status_code == 200, tested.text
    result = tested.json()
    assert result["delivered"] is False and result["status_code"] == 302
    assert "redirects are not followed" in result["error"]
    assert len(receiver.requests) == 1 and receiver.requests[0].path == "/"


def test_test_ping_is_signed_and_recorded(open_acme: OpenAcme, receiver: Receiver) -> None:
    """The test ping arrives signed as webhook.tested, the answer gives status and latency,
    the log records webhook.tested, and the entry is not delivered to the webhook again."""
    acme = open_acme()
    made = add_hook(acme, receiver.url, ["*"])
    result = acme.call("POST", f"{HOOKS}/{made['id']}/test").json()
    assert result["delivered"] is True and result["status_code"] == 200
    assert result["latency_ms"] > 0 and result["error"] is None
    [ping] = receiver.wait_for(1)
    assert ping.headers["x-coffer-event"] == "webhook.tested"
    assert verify_signature(
        made["secret"],
        ping.headers["x-coffer-timestamp"],
        ping.body,
        ping.headers["x-coffer-signature"],
        time.time(),
    )
    tested = [meta for action, meta in acme.actions() if action == "webhook.tested"]
    assert [meta["webhook_id"] for meta in tested] == [made["id"]]
    acme.deliver()
    assert len(receiver.requests) == 1


def test_a_host_name_is_sent_its_own_host_header_at_an_approved_address(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """A webhook named by host name (allowed by name) is reached at an address the check
    approved, with that name in the Host header."""
    acme = open_acme(outbound_allow=("localhost",))
    made = add_hook(acme, f"http://localhost:{receiver.port}/by-name", ["*"])
    result = acme.call("POST", f"{HOOKS}/{made['id']}/test").json()
    assert result["delivered"] is True, result
    [request] = receiver.wait_for(1)
    assert request.path == "/by-name" and request.headers["host"] == f"localhost:{receiver.port}"


def test_retries_back_off_then_fail_and_record_webhook_failed(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """An endpoint answering 500 is tried 8 times with growing gaps, then the delivery is
    failed with its status and ``webhook.failed`` is recorded."""
    acme = open_acme()
    made = add_hook(acme, receiver.url, ["secret.read"])
    receiver.status = 500
    base = 0.004
    sender = acme.sender(backoff_base=base)
    acme.read()
    acme.dispatch()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and len(receiver.requests) < 8:
        sender.step()
        time.sleep(0.001)
    for _ in range(20):
        sender.step()
    times = [r.at for r in receiver.wait_for(8)]
    assert len(receiver.requests) == 8
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= base * 2 ** (n + 1) * 0.9 for n, gap in enumerate(gaps)), gaps
    [log] = deliveries(acme, made["id"])
    assert (log["state"], log["attempts"], log["status_code"]) == ("failed", 8, 500)
    assert log["error"] == "HTTP 500" and log["next_attempt_at"] is None
    failed = [meta for action, meta in acme.actions() if action == "webhook.failed"]
    assert len(failed) == 1
    assert failed[0]["webhook_id"] == made["id"] and failed[0]["delivery_id"] == log["id"]
    assert failed[0]["status_code"] == 500 and failed[0]["attempts"] == 8


def test_a_slow_endpoint_times_out_and_is_retried(open_acme: OpenAcme, receiver: Receiver) -> None:
    """An endpoint slower than the timeout is a failed attempt that stays pending for a
    retry, and a failure postpones that webhook's other due deliveries."""
    acme = open_acme()
    made = add_hook(acme, receiver.url, ["secret.read"])
    acme.services.webhooks.poster = WebhookPoster(allow=("127.0.0.1",), timeout_seconds=0.3)
    receiver.hang = True
    acme.read()
    acme.read()
    acme.dispatch()
    started = time.monotonic()
    acme.sender(backoff_base=60.0).step()
    assert time.monotonic() - started < 2.0
    assert len(receiver.requests) == 1
    logs = deliveries(acme, made["id"])
    assert [log["state"] for log in logs] == ["pending", "pending"]
    tried = [log for log in logs if log["attempts"] == 1]
    assert len(tried) == 1 and tried[0]["error"] == "timed out after 0.3 s"
    assert len({log["next_attempt_at"] for log in logs}) == 1


def test_url_is_checked_again_before_each_send(open_acme: OpenAcme, receiver: Receiver) -> None:
    """A URL that was allowed when created but is refused at send time (as after DNS
    rebinding) is not contacted; the attempt fails naming the rule."""
    acme = open_acme()
    made = add_hook(acme, receiver.url, ["secret.read"])
    acme.services.webhooks.poster = WebhookPoster(allow=())
    acme.read()
    acme.deliver()
    assert receiver.requests == []
    [log] = deliveries(acme, made["id"])
    assert log["state"] == "pending" and log["attempts"] == 1
    assert log["error"].startswith("refused: url:") and "loopback" in log["error"]


def test_delete_and_foreign_ids_and_the_limit_parameter(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """Deleting answers 204 and records webhook.deleted; afterwards, and for another
    organization's owner, the webhook answers 404 like one that never existed; a bad
    ``limit`` is a 422 naming it."""
    acme = open_acme()
    made = add_hook(acme, receiver.url, ["*"])
    for limit in ("0", "1001", "ten", "-1"):
        response = acme.call("GET", f"{HOOKS}/{made['id']}/deliveries", params={"limit": limit})
        assert response.status_code == 422 and response.json()["error"]["field"] == "limit"
    create_second_org(acme.services, acme.settings, "rival", "owner@rival.test")
    rival = login(acme.client, "owner@rival.test")["token"]
    missing = "01NOSUCHWEBHOOK00000000000"
    for method, suffix in (("DELETE", ""), ("POST", "/test"), ("GET", "/deliveries")):
        theirs = acme.call(method, f"{HOOKS}/{made['id']}{suffix}", token=rival)
        nothing = acme.call(method, f"{HOOKS}/{missing}{suffix}", token=rival)
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.text == nothing.text.replace(missing, made["id"])
    assert acme.call("DELETE", f"{HOOKS}/{made['id']}").status_code == 204
    assert acme.call("GET", HOOKS).json()["webhooks"] == []
    assert acme.call("GET", f"{HOOKS}/{made['id']}/deliveries").status_code == 404
    deleted = [meta for action, meta in acme.actions() if action == "webhook.deleted"]
    assert [meta["webhook_id"] for meta in deleted] == [made["id"]]
    acme.read()
    acme.deliver()
    assert receiver.requests == []
