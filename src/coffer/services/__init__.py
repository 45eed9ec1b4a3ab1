"""coffer.services."""
