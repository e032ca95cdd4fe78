"""Media types the HTTP API and its client share (kept light: the client imports only this)."""

ARROW = "application/vnd.apache.arrow.stream"
