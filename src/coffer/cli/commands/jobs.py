"""``coffer jobs``: which node runs each background job (admins and owners)."""

from __future__ import annotations

from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import print_json, print_table


@handle_errors
def jobs(as_json: JsonOpt = False) -> None:
    """List the background jobs (audit sealer, pruners, webhook and SIEM deliveries) with
    the node that holds each one's lease and when the lease runs out. A lease that has run
    out means no node is doing the job now (another takes it on its next check)."""
    with api() as client:
        data = client.get_json("/api/v1/sys/jobs")
    if as_json:
        print_json(data)
        return
    rows = [
        (
            job["job"],
            job["holder"],
            "held" if job["held"] else "run out",
            f"{job['expires_at'][:10]} {job['expires_at'][11:19]}Z",
        )
        for job in data["jobs"]
    ]
    print_table("Jobs", ("job", "holder", "lease", "until"), rows, whole=("job", "holder"))
