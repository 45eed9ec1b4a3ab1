"""Share links in a real browser: a link opens once and never again, and a link preview burns
nothing.

A share is made the way ``coffer share`` makes one (sealed here with ``seal_share``, the proof
from ``share_proof``, ``POST /api/v1/shares``); the link is then fetched by a plain HTTP client
as a chat app's link-preview bot would, and opened in headless Chromium, driven by Playwright,
as the person it was sent to would: the interstitial page, the "Reveal secret" button, the
value decrypted by ``share.js`` with WebCrypto from the key in the fragment.

The browser is Debian's ``chromium`` (Playwright's own browser download is never used). With no
chromium on PATH the tests are skipped with the reason; under ``CI=true`` they fail instead, and
``.ci/run`` installs it, so CI never passes with the browser silently missing.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from coffer.crypto.share_cipher import (
    decode_share_key,
    encode_share_key,
    seal_share,
    share_proof,
)
from tests.e2e.harness import ServerProcess

BROWSER_TIMEOUT_MS = 15_000
# What a preview bot sends: chat apps fetch a pasted link to show a card beside it.
PREVIEW_AGENT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
# A value that would break on any lossy step: non-ASCII in three scripts, an emoji outside the
# BMP, a newline in the middle, a trailing newline, and characters that mean something in HTML.
VALUE = "pässwörd ✓ 秘密 🔑\nline two <b>&amp;</b> 'q' \"qq\"\n"
PAGE_TITLE = "A secret was shared with you · coffer"
EXPIRED_TITLE = "This link has expired · coffer"
LAST_READ = "This was the last read: the share is now destroyed."
SEALED_READ = "This was the last read: the share is now sealed."
GONE_OR_WRONG = "This link has expired, was already opened, or its key is wrong."
# Chromium's own flags for a closed network (no background fetches of Google's services, which
# this machine refuses) and small /dev/shm in containers. Playwright adds --no-sandbox itself.
CHROMIUM_ARGS = (
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Collects CSP violations in the page itself: Playwright injects init scripts over the
# DevTools protocol, so the page's own CSP does not stop this one.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


# --- the browser ----------------------------------------------------------------------------


def chromium_path() -> str | None:
    """Returns the system Chromium on PATH (Debian's ``chromium``), or None."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for this module. Skips without a system chromium, fails under CI."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: install Debian's chromium (.ci/run does)")
        pytest.skip("browser tests not run: no chromium on PATH (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cache, no cookies) for one test."""
    made = browser.new_context()
    made.set_default_timeout(BROWSER_TIMEOUT_MS)
    made.add_init_script(RECORD_VIOLATIONS)
    try:
        yield made
    finally:
        made.close()


@dataclass
class Console:
    """What a page wrote to its console, and the script errors it threw."""

    messages: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """Every console error and warning as "TYPE TEXT (URL)", page errors as "pageerror"."""
        noted = [
            f"{message.type} {message.text} ({message.location.get('url', '')})"
            for message in self.messages
            if message.type in ("error", "warning")
        ]
        return noted + [f"pageerror {error}" for error in self.page_errors]


def open_page(context: BrowserContext) -> tuple[Page, Console]:
    """Returns a new tab in ``context`` and the record of what its console shows."""
    page = context.new_page()
    console = Console()
    page.on("console", lambda message: console.messages.append(message))
    page.on("pageerror", lambda error: console.page_errors.append(str(error)))
    return page, console


def csp_violations(page: Page) -> list[str]:
    """The CSP violations the page reported (see RECORD_VIOLATIONS)."""
    found: list[str] = page.evaluate("window.__cspViolations")
    return found


# --- shares ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """A share made as ``coffer share`` makes one; ``link`` is what its sender hands out."""

    id: str
    token: str
    key_text: str
    addr: str
    expires_at: str

    @property
    def page_url(self) -> str:
        """The link without its fragment: what reaches the server."""
        return f"{self.addr}/s/{self.token}"

    @property
    def link(self) -> str:
        """The whole link, key in the fragment."""
        return f"{self.page_url}#{self.key_text}"

    def link_with_fragment(self, fragment: str) -> str:
        """The link with another fragment (a mangled or wrong key)."""
        return f"{self.page_url}#{fragment}"


def create_share(
    server: ServerProcess, value: str, *, max_reads: int = 1, delete: bool = True
) -> Share:
    """Seals ``value`` client-side and stores it with ``POST /api/v1/shares`` (``delete``
    false: the last read seals it instead of destroying it)."""
    key_text, envelope = seal_share(value.encode("utf-8"))
    response = httpx.post(
        f"{server.addr}/api/v1/shares",
        headers={"Authorization": f"Bearer {server.token}"},
        json={
            "ciphertext": base64.b64encode(envelope).decode("ascii"),
            "proof": share_proof(decode_share_key(key_text)),
            "max_reads": max_reads,
            "delete": delete,
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["path"] == f"/s/{created['token']}"
    assert created["limits"]["max_reads"] == max_reads
    assert created["limits"]["read_count"] == 0
    return Share(
        created["id"], created["token"], key_text, server.addr, created["limits"]["expires_at"]
    )


def share_state(share: Share) -> tuple[int, str | None, str | None]:
    """(status, X-Coffer-Read-Count, X-Coffer-Reads-Remaining) of ``HEAD /api/v1/shares/T``,
    which never counts a read."""
    response = httpx.head(f"{share.addr}/api/v1/shares/{share.token}")
    return (
        response.status_code,
        response.headers.get("x-coffer-read-count"),
        response.headers.get("x-coffer-reads-remaining"),
    )


def reveal_by_api(share: Share) -> int:
    """Status of ``POST /api/v1/shares/T/reveal`` with the right proof (counts a read)."""
    response = httpx.post(
        f"{share.addr}/api/v1/shares/{share.token}/reveal",
        json={"proof": share_proof(decode_share_key(share.key_text))},
    )
    return response.status_code


def another_key() -> str:
    """A well-formed key (32 bytes, fragment form) that opens no share."""
    return encode_share_key(secrets.token_bytes(32))


def not_found_logged(url: str) -> str:
    """The console error Chromium logs for a response of 404 to ``url``."""
    return (
        "error Failed to load resource: the server responded with a status of 404 "
        f"(Not Found) ({url})"
    )


def assert_unrevealed_page(page: Page, share: Share, reads: str = "1 more time") -> None:
    """The interstitial page before the click: what the link allows, a button, nothing shown."""
    assert page.title() == PAGE_TITLE
    assert page.locator("h1").text_content() == "A secret was shared with you"
    assert page.locator("main p").all_text_contents() == [
        f"Someone shared a secret with you. It can be revealed {reads}, "
        f"it expires at {share.expires_at}.",
        "Revealing it counts as a read; when no reads remain it is destroyed.",
        "",
    ]
    reveal = page.locator("#reveal")
    assert reveal.text_content() == "Reveal secret"
    assert reveal.is_visible()
    assert reveal.is_enabled()
    assert page.locator("#secret").is_hidden()
    assert page.locator("#secret").text_content() == ""
    assert page.locator("#copy").is_hidden()
    assert page.locator("#status").text_content() == ""


# --- the tests ------------------------------------------------------------------------------


def test_a_preview_burns_nothing_and_the_link_opens_once(
    server: ServerProcess, context: BrowserContext
) -> None:
    share = create_share(server, VALUE, max_reads=1)

    # (a) A link-preview bot fetches the link it was pasted: GET (the fragment is never sent)
    # and HEAD. It gets the page with the button, never the value, and nothing is counted.
    preview = httpx.get(share.link, headers={"User-Agent": PREVIEW_AGENT})
    assert preview.status_code == 200
    assert preview.headers["content-type"] == "text/html; charset=utf-8"
    assert preview.headers["cache-control"] == "no-store"
    assert 'id="reveal"' in preview.text
    assert 'content="noindex, nofollow"' in preview.text
    for asset in ("share.js", "share.css"):
        assert httpx.get(f"{share.addr}/assets/{asset}").status_code == 200
    # Its status is test_head_of_the_share_page_answers_like_get's business; here: no read.
    httpx.head(share.link, headers={"User-Agent": PREVIEW_AGENT})
    assert share_state(share) == (200, "0", "1")

    # (b) The person opens the link, twice (two tabs): loading the page holds the value back
    # and counts nothing.
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=share.addr)
    page, console = open_page(context)
    other_tab, other_console = open_page(context)
    for tab in (page, other_tab):
        response = tab.goto(share.link)
        assert response is not None
        assert response.status == 200
        assert tab.evaluate("window.isSecureContext") is True  # WebCrypto on http://127.0.0.1
        assert_unrevealed_page(tab, share)
    assert share_state(share) == (200, "0", "1")

    page.locator("#reveal").click()
    page.locator("#secret").wait_for(state="visible")
    assert page.locator("#secret").text_content() == VALUE
    assert page.locator("#status").text_content() == LAST_READ
    assert page.locator("#reveal").is_hidden()
    assert share_state(share)[0] == 404  # the one read burned it
    page.locator("#copy").click()
    page.locator("#status").filter(has_text="Copied.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == VALUE
    # (e) A clean page: no console errors or warnings, no CSP violation.
    assert console.errors() == []
    assert csp_violations(page) == []
    # The key stayed in the browser: the server's log never saw it.
    assert share.key_text not in server.log_text()

    # (c) The tab that was open all along cannot reveal it any more.
    other_tab.locator("#reveal").click()
    other_tab.locator("#status").filter(has_text=GONE_OR_WRONG).wait_for()
    assert other_tab.locator("#secret").is_hidden()
    assert other_tab.locator("#secret").text_content() == ""
    reveal_url = f"{share.addr}/api/v1/shares/{share.token}/reveal"
    assert other_console.errors() == [not_found_logged(reveal_url)]
    assert csp_violations(other_tab) == []

    # Reloading, or opening the link in a new tab, shows the expired page: no button to press.
    new_tab, new_console = open_page(context)
    for again, tab_console in ((page.reload(), console), (new_tab.goto(share.link), new_console)):
        assert again is not None
        assert again.status == 404
        opened = again.frame.page
        assert opened.title() == EXPIRED_TITLE
        assert opened.locator("h1").text_content() == "This link has expired"
        assert opened.locator("main p").all_text_contents() == [
            "It was already opened, has expired, or never existed."
        ]
        assert opened.locator("button").count() == 0
        assert opened.locator("#secret").count() == 0
        assert VALUE not in opened.content()
        assert csp_violations(opened) == []
        # Chromium logs the page's own 404, nothing else.
        assert tab_console.errors() == [not_found_logged(share.link)]
    assert reveal_by_api(share) == 404
    assert httpx.get(share.link).status_code == 404


def test_head_of_the_share_page_answers_like_get(server: ServerProcess) -> None:
    share = create_share(server, VALUE)
    page = httpx.get(share.page_url)
    head = httpx.head(share.page_url)
    assert (head.status_code, head.headers.get("content-type"), head.content) == (
        200,
        page.headers["content-type"],
        b"",
    )
    assert share_state(share) == (200, "0", "1")


def test_a_bad_key_in_the_link_shows_an_error_and_burns_nothing(
    server: ServerProcess, context: BrowserContext
) -> None:
    share = create_share(server, VALUE, max_reads=1)
    cases = (
        (share.page_url, "This link is missing its key (the part after #)."),
        (share.link_with_fragment("not-a-key"), "The key in this link is malformed."),
        (share.link_with_fragment(share.key_text[:-2]), "The key in this link is malformed."),
        (share.link_with_fragment(another_key()), GONE_OR_WRONG),
    )
    for link, message in cases:
        # A new tab each time: a link that differs only in its fragment would not reload.
        page, console = open_page(context)
        response = page.goto(link)
        assert response is not None
        assert response.status == 200
        assert_unrevealed_page(page, share)
        page.locator("#reveal").click()
        page.locator("#status").filter(has_text=message).wait_for()
        assert page.locator("#status").text_content() == message, link
        assert page.locator("#secret").is_hidden()
        assert page.locator("#secret").text_content() == ""
        assert page.locator("#copy").is_hidden()
        assert page.locator("#reveal").is_disabled()
        assert share_state(share) == (200, "0", "1"), link
        assert csp_violations(page) == []
        if message == GONE_OR_WRONG:
            # The wrong proof's 404 is the one line Chromium logs; no script error.
            reveal_url = f"{share.addr}/api/v1/shares/{share.token}/reveal"
            assert console.errors() == [not_found_logged(reveal_url)]
        else:
            assert console.errors() == []
        page.close()

    # The right link still reveals the value, once.
    page, console = open_page(context)
    page.goto(share.link)
    page.locator("#reveal").click()
    page.locator("#secret").wait_for(state="visible")
    assert page.locator("#secret").text_content() == VALUE
    assert page.locator("#status").text_content() == LAST_READ
    assert console.errors() == []
    assert share_state(share)[0] == 404


def test_a_share_with_reads_left_says_how_many_remain(
    server: ServerProcess, context: BrowserContext
) -> None:
    share = create_share(server, VALUE, max_reads=2)
    page, console = open_page(context)
    page.goto(share.link)
    assert_unrevealed_page(page, share, "2 more times")
    page.locator("#reveal").click()
    page.locator("#secret").wait_for(state="visible")
    assert page.locator("#secret").text_content() == VALUE
    assert page.locator("#status").text_content() == "Revealed; 1 read(s) remain."
    assert share_state(share) == (200, "1", "1")

    second, _ = open_page(context)
    second.goto(share.link)
    second.locator("#reveal").click()
    second.locator("#secret").wait_for(state="visible")
    assert second.locator("#secret").text_content() == VALUE
    assert second.locator("#status").text_content() == LAST_READ
    assert console.errors() == []
    assert share_state(share)[0] == 404


def test_a_sealed_share_shows_the_sealed_page_after_its_last_read(
    server: ServerProcess, context: BrowserContext
) -> None:
    share = create_share(server, VALUE, max_reads=1, delete=False)
    page, console = open_page(context)
    page.goto(share.link)
    page.locator("#reveal").click()
    page.locator("#secret").wait_for(state="visible")
    assert page.locator("#secret").text_content() == VALUE
    assert page.locator("#status").text_content() == SEALED_READ
    assert console.errors() == []
    assert share_state(share) == (410, "1", "0")

    again = page.reload()
    assert again is not None
    assert again.status == 410
    assert page.title() == "This share is sealed · coffer"
    assert page.locator("main p").all_text_contents() == ["Its read limit was reached."]
    assert page.locator("button").count() == 0
    assert VALUE not in page.content()
