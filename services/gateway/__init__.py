"""Gateway: the public HTTP API (/convert, /status, /download)."""
