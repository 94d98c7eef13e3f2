"""Post deployment status events to DataRobot, never blocking or failing startup.

Enabled only when DATAROBOT_ENDPOINT, DATAROBOT_API_TOKEN and MLOPS_DEPLOYMENT_ID are all set.
Events go out in order from one background thread; a failure is logged in one line (without
the token) and dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

log = logging.getLogger(__name__)

REQUIRED = ("DATAROBOT_ENDPOINT", "DATAROBOT_API_TOKEN", "MLOPS_DEPLOYMENT_ID")
TIMEOUT_S = 10


def event_body(deployment_id: str, title: str, message: str, now: datetime | None = None) -> dict[str, str]:
    return {
        "eventType": "deploymentInfo",
        "title": title,
        "message": message,
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "deploymentId": deployment_id,
    }


class EventReporter:
    """Queue of events posted to {DATAROBOT_ENDPOINT}/remoteEvents/; a no-op when not configured."""

    def __init__(self, environ: Mapping[str, str], verify_ssl: bool = True) -> None:
        self.enabled = all(environ.get(k) for k in REQUIRED)
        self._verify = verify_ssl
        self._queue: queue.Queue[dict[str, str] | None] = queue.Queue()
        if self.enabled:
            self._url = environ["DATAROBOT_ENDPOINT"].rstrip("/") + "/remoteEvents/"
            self._token = environ["DATAROBOT_API_TOKEN"]
            self._deployment = environ["MLOPS_DEPLOYMENT_ID"]
            self._thread = threading.Thread(target=self._send_all, name="platform-events", daemon=True)
            self._thread.start()

    def set_verify_ssl(self, verify: bool) -> None:
        self._verify = verify

    def report(self, title: str, message: str = "") -> None:
        log.info("deployment event: %s%s", title, f": {message}" if message else "")
        if self.enabled:
            self._queue.put(event_body(self._deployment, title, message))

    def close(self, timeout: float = TIMEOUT_S) -> None:
        """Send what is queued, waiting at most `timeout` seconds."""
        if self.enabled:
            self._queue.put(None)
            self._thread.join(timeout)

    def _send_all(self) -> None:
        import requests

        with requests.Session() as session:
            while (body := self._queue.get()) is not None:
                try:
                    response = session.post(
                        self._url,
                        json=body,
                        timeout=TIMEOUT_S,
                        verify=self._verify,
                        headers={"Authorization": f"Bearer {self._token}"},
                    )
                    response.raise_for_status()
                except Exception as exc:
                    log.warning(
                        "could not post deployment event %r to %s: %s",
                        body["title"],
                        self._url,
                        type(exc).__name__
                        + (f" {exc.response.status_code}" if getattr(exc, "response", None) is not None else ""),
                    )
