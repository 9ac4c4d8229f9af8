"""Log output of the long-running commands (``up``, ``agent``, ``gateway``)."""

from __future__ import annotations

import logging

from zhisuan.config import redact_url_passwords


class RedactingFormatter(logging.Formatter):
    """Log lines never show a URL's password (a database URL in a driver's error, say)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_url_passwords(super().format(record))


def configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
