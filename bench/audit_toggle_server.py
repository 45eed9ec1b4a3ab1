"""Runs the ``coffer`` CLI with the hot read path's audit insert on or off: benchmark only.

coffer has no switch to turn auditing off, on purpose. To measure what the audit entry of a
secret read costs, ``audit_bench.py`` starts two servers through this launcher::

    python bench/audit_toggle_server.py on  server --dir D --host 127.0.0.1 --port P
    python bench/audit_toggle_server.py off server --dir D --host 127.0.0.1 --port P

``on`` runs the CLI unchanged. ``off`` first replaces
``coffer.services.audit_batcher.AuditBatcher.append`` (the group commit of the hot read
path's ``secret.read`` entries, ``services/fast_read.py``) with a no-op, before the app is
built. Everything else stays: the entry is still built (id, canonical bytes, HMAC), the
background sealer still runs (with nothing to seal), other requests still write their
entries through ``AuditWriter.append``. So ``off`` is the read path minus the audit INSERT
and minus the sealing of that entry later: the part of auditing that grows with reads.
Both modes go through this launcher so the two processes start the same way.
"""

from __future__ import annotations

import sys
from typing import Any


async def _no_audit_insert(self: Any, row: dict[str, Any]) -> None:
    """Stands in for ``AuditBatcher.append``: writes nothing."""


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("on", "off"):
        sys.exit("usage: audit_toggle_server.py on|off COFFER-ARGS...")
    mode = sys.argv.pop(1)
    if mode == "off":
        from coffer.services.audit_batcher import AuditBatcher

        AuditBatcher.append = _no_audit_insert  # type: ignore[method-assign]
    from coffer.cli.entry import main as coffer_main

    sys.argv[0] = "coffer"
    coffer_main()


if __name__ == "__main__":
    main()
