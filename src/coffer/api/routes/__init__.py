"""coffer.api.routes."""
