"""coffer.api."""
