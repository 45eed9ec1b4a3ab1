"""The ``coffer`` command tree. Heavy imports happen inside commands, so ``coffer run`` and
friends start fast."""

from __future__ import annotations

import typer

from coffer import __version__
from coffer.cli.commands import (
    access,
    account,
    approvals,
    audit,
    backup,
    compliance,
    demo,
    ephemeral,
    guard,
    inventory,
    jobs,
    keys,
    local,
    mfa,
    migrate,
    projects,
    requests,
    reviews,
    rotation,
    run,
    scan,
    secrets,
    share,
    team,
    tokens,
    transfer,
    unseal,
    webhooks,
)

app = typer.Typer(
    name="coffer",
    help="coffer: a self-hosted secrets manager with a verifiable audit trail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"coffer {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Server address and token come from COFFER_ADDR / COFFER_TOKEN or `coffer login`;
    COFFER_CA_CERT names a CA bundle for the server's TLS certificate."""


app.command("init")(local.init)
app.command("server")(local.server)
app.command("migrate")(migrate.migrate)
app.command("login")(account.login)
app.command("logout")(account.logout)
app.command("whoami")(account.whoami)
app.command("passwd")(account.passwd)
app.command("accept-invite")(account.accept_invite)
app.add_typer(projects.projects_app, name="projects")
app.add_typer(projects.envs_app, name="envs")
app.add_typer(secrets.secrets_app, name="secrets")
app.add_typer(ephemeral.ephemeral_app, name="ephemeral")
app.add_typer(share.share_app, name="share")
app.command("prune")(ephemeral.prune)
app.add_typer(team.members_app, name="members")
app.add_typer(team.org_app, name="org")
app.add_typer(tokens.tokens_app, name="tokens")
app.add_typer(tokens.keys_app, name="keys")
app.add_typer(access.machines_app, name="machines")
app.add_typer(access.grants_app, name="grants")
app.add_typer(mfa.mfa_app, name="mfa")
app.add_typer(webhooks.webhooks_app, name="webhooks")
app.add_typer(audit.audit_app, name="audit")
app.command("jobs")(jobs.jobs)
app.command("rotate-key")(keys.rotate_key)
app.command("rotate-root")(keys.rotate_root)
app.add_typer(keys.root_key_app, name="root-key")
app.add_typer(backup.backup_app, name="backup")
app.command("unseal")(unseal.unseal)
app.add_typer(rotation.rotation_app, name="rotation")
app.command("import")(transfer.import_file)
app.command("export")(transfer.export)
app.command("diff")(transfer.diff)
app.command("promote")(transfer.promote)
app.command(
    "run", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True}
)(run.run)
app.command("scan")(scan.scan)
app.add_typer(guard.guard_app, name="guard")
app.add_typer(inventory.inventory_app, name="inventory")
app.add_typer(inventory.policy_app, name="policy")
app.add_typer(requests.access_app, name="access")
app.add_typer(approvals.approvals_app, name="approvals")
app.add_typer(reviews.reviews_app, name="reviews")
app.add_typer(compliance.compliance_app, name="compliance")
app.add_typer(demo.demo_app, name="demo")
