"""An evidence pack on disk: the folder ``coffer compliance evidence`` writes from the
server's evidence JSON and signed audit export (HTML report, CSV and JSON files, the export
verified offline, and a manifest of SHA-256 hashes). See ``docs/compliance.md``."""
