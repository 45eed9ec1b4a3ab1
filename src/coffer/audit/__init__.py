"""coffer.audit."""
