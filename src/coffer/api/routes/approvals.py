"""``/api/v1/approvals``: issue 9 (approvals). Placeholder router, filled in by issue 9's work."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])
