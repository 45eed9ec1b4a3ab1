"""Provider rules for payment, chat, AI, SaaS, monitoring and messaging services: realistic
fakes are reported under the right rule, while documentation placeholders, identifiers and
values without the provider's name next to them are not.

Fake tokens are assembled from parts so this file never holds a token-shaped literal.
"""

from __future__ import annotations

import random
import string

import pytest

from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.rules import builtin_rules

ENGINE = Engine(builtin_rules())
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B_FILES = ("ai.toml", "chat.toml", "payment.toml", "saas.toml", "monitoring.toml", "messaging.toml")


def _body(seed: str, length: int, alphabet: str = ALNUM) -> str:
    """A deterministic random-looking body: the fake part of a fake token."""
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(length))


def _scan(text: str, path: str = "deploy/.env") -> list[Finding]:
    return ENGINE.scan(text.encode(), path)


STRIPE_LIVE = "sk_" + "live_" + "51Mz4QpL8vR2tKx9WnB7cYd3Hf6Ga"
PAYSTACK_LIVE = "sk_" + "live_" + _body("paystack", 40, HEX)
SLACK_WEBHOOK = (
    "https://hooks.slack.com/services/" + "T04MZ8QK2PL/B07RV3XW9JN/" + "q8Vb3LmT0xKz7PnR2wYc5HdA"
)
OPENAI_PROJECT = (
    "sk-" + "proj-" + _body("oa1", 74, ALNUM + "_-") + "T3Blbk" + "FJ" + _body("oa2", 74)
)
DATADOG_KEY = _body("datadog", 32, HEX)
SENTRY_DSN = "https://" + _body("sentry", 32, HEX) + "@o4506712." + "ingest.sentry.io/4506712345"
KAFKA_PASSWORD = _body("kafka", 64, ALNUM + "+/")
TELEGRAM_TOKEN = "6105548217:" + "AA" + _body("telegram", 33, ALNUM + "_")
LINEAR_KEY = "lin_" + "api_" + _body("linear", 40)
SENDGRID_KEY = "SG." + _body("sg1", 22) + "." + _body("sg2", 43)
ANTHROPIC_KEY = "sk-" + "ant-api03-" + _body("anthropic", 93, ALNUM + "_-") + "AA"

ENV_FILE = f"""\
# production settings
STRIPE_SECRET_KEY={STRIPE_LIVE}
PAYSTACK_SECRET_KEY="{PAYSTACK_LIVE}"
slack_webhook: {SLACK_WEBHOOK}
OPENAI_API_KEY={OPENAI_PROJECT}
DD_API_KEY={DATADOG_KEY}
SENTRY_DSN={SENTRY_DSN}
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
username="QW7KX2M4ZP9RT5LN" password="{KAFKA_PASSWORD}";
TELEGRAM_BOT_TOKEN={TELEGRAM_TOKEN}
linear:
  api_key: "{LINEAR_KEY}"
SENDGRID_API_KEY='{SENDGRID_KEY}'
client = Anthropic(api_key="{ANTHROPIC_KEY}")
"""


def test_a_realistic_env_file_reports_each_secret_under_its_provider_rule() -> None:
    """Every fake credential in a realistic settings file is reported once, on its line,
    under its provider's rule, with the whole secret and nothing else."""
    findings = _scan(ENV_FILE)
    assert [(f.line, f.rule_id, f.secret) for f in findings] == [
        (2, "stripe-secret-key", STRIPE_LIVE),
        (3, "paystack-secret-key", PAYSTACK_LIVE),
        (4, "slack-webhook-url", SLACK_WEBHOOK),
        (5, "openai-project-key", OPENAI_PROJECT),
        (6, "datadog-api-key", DATADOG_KEY),
        (7, "sentry-dsn", SENTRY_DSN),
        (8, "kafka-jaas-password", KAFKA_PASSWORD),
        (9, "telegram-bot-token", TELEGRAM_TOKEN),
        (11, "linear-api-key", LINEAR_KEY),
        (12, "sendgrid-api-key", SENDGRID_KEY),
        (13, "anthropic-api-key", ANTHROPIC_KEY),
    ]
    assert {f.kind for f in findings} == {
        "payment",
        "chat",
        "ai",
        "saas",
        "monitoring",
        "messaging",
    }


def test_a_stripe_test_key_is_reported_with_low_severity() -> None:
    """A Stripe test-mode key is a finding, but a low-severity one; a live key is critical."""
    test_key = "sk_" + "test_" + "51Mz4QpL8vR2tKx9WnB7cYd3Hf6Ga"
    (finding,) = _scan(f"stripe.api_key = '{test_key}'\n", "app/billing.py")
    assert (finding.rule_id, finding.severity) == ("stripe-test-key", "low")
    (live,) = _scan(f"stripe.api_key = '{STRIPE_LIVE}'\n", "app/billing.py")
    assert live.severity == "critical"


def test_a_keyword_anchored_value_needs_the_provider_name_next_to_it() -> None:
    """The same 32-hex value is a Datadog key after DD_API_KEY= but not after an unrelated
    name, a git SHA-like value after the word datadog in prose is not a key either."""
    assert [f.rule_id for f in _scan(f"DD_API_KEY={DATADOG_KEY}\n")] == ["datadog-api-key"]
    assert _scan(f"build_id: {DATADOG_KEY}\n", "ci/build.yaml") == []
    sha = _body("sha", 40, HEX)
    assert _scan(f"Bump datadog-agent to commit {sha}\n", "CHANGELOG.md") == []


def test_a_twilio_account_sid_is_an_identifier_not_a_secret() -> None:
    """A Twilio account SID (AC + 32 hex) next to the word twilio is not reported as the
    32-hex auth token."""
    sid = "AC" + _body("twilio-sid", 32, HEX)
    assert _scan(f"twilio_account: {sid}\n", "config/sms.yaml") == []


DECOYS = {
    "payment": [
        "STRIPE_SECRET_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "stripe.api_key = 'sk_live_YOUR_SECRET_KEY_HERE_1234'",
        "Set your key: sk_live_... (see the dashboard)",
        "SHOPIFY_TOKEN=shpat_00000000000000000000000000000000",
        "square: sq0atp-XXXXXXXXXXXXXXXXXXXXXX",
        "BRAINTREE: access_token$production$<merchant_id>$<hash>",
        "PAYSTACK_SECRET_KEY=sk_test_0000000000000000000000000000000000000000",
        "webhook_secret: whsec_...",
    ],
    "chat": [
        "SLACK_BOT_TOKEN=xoxb-your-token-here",
        "url: https://hooks.slack.com/services/XXXXX/YYYYY/ZZZZZ",
        "url: https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "url: https://hooks.slack.com/services/T00000000/B00000000/000000000000000000000000",
        "hook: https://discord.com/api/webhooks/000000000000000000/" + "a" * 68,
        "curl https://api.telegram.org/bot123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11/getMe",
        "api key sid: SKXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    ],
    "ai": [
        "OPENAI_API_KEY=sk-...example...",
        "key = 'sk-proj-" + "x" * 74 + "T3BlbkFJ" + "x" * 74 + "'",
        "HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "ANTHROPIC_API_KEY=sk-ant-api03-...",
        "GROQ_API_KEY=gsk_<your-groq-key>",
        "MISTRAL_API_KEY: your-mistral-key",
    ],
    "saas": [
        "LINEAR_API_KEY=lin_api_0000000000000000000000000000000000000000",
        "NOTION_TOKEN=secret_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "MAILCHIMP_KEY=0123456789abcdef0123456789abcdef-us6",
        "POSTMAN_API_KEY=PMAK-<your key>",
        "hubspot: pat-na1-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    ],
    "monitoring": [
        "DD_API_KEY=<DATADOG_API_KEY>",
        "DD_API_KEY=00000000000000000000000000000000",
        "dsn: https://examplePublicKey@o0.ingest.sentry.io/0",
        "NEW_RELIC_API_KEY=NRAK-XXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "GRAFANA_TOKEN=glsa_...",
    ],
    "messaging": [
        "SENDGRID_API_KEY=SG.xxxxxxxxxxxxxxxxxxxxxx.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="$KAFKA_USER" password="${KAFKA_PASSWORD}";',
        "sasl.password=<your-password>",
        "fcm: AAAAxxxxxxx:APA91b" + "x" * 134,
        "MAILGUN_API_KEY=key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ],
}


@pytest.mark.parametrize(
    "decoy",
    [
        pytest.param(text, id=f"{family}-{i}")
        for family, texts in DECOYS.items()
        for i, text in enumerate(texts)
    ],
)
def test_documentation_placeholders_are_not_reported(decoy: str) -> None:
    """Placeholders as vendors' documentation and templates write them are not findings."""
    assert _scan(decoy + "\n", "docs/setup.md") == []


def test_these_rule_files_hold_at_least_85_provider_rules_in_six_kinds() -> None:
    """The six rule files hold at least 85 non-generic rules, each file one kind."""
    rules = [rule for rule in ENGINE.rules.rules if rule.source in B_FILES]
    assert len(rules) >= 85
    assert not any(rule.generic for rule in rules)
    assert {rule.source: rule.kind for rule in rules} == {
        "ai.toml": "ai",
        "chat.toml": "chat",
        "payment.toml": "payment",
        "saas.toml": "saas",
        "monitoring.toml": "monitoring",
        "messaging.toml": "messaging",
    }
