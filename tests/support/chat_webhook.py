"""A chat app's incoming webhook on loopback (Slack's, Mattermost's): it records each POST and answers as scripted."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from tests.support.servers import read_body


class ChatWebhook:
    """Answers each POST with the next of `statuses` (200 once they run out), or never, while `hold` is set."""

    def __init__(self) -> None:
        self.url = ""
        self.paths: list[str] = []
        self.bodies: list[Any] = []  # every POST's JSON body, failed ones included, in order
        self.statuses: list[int] = []
        self._answered: list[int] = []  # the status each answered POST got
        self.answer_body = b"ok"
        self.hold = False
        self.held = threading.Event()  # a POST arrived and is held
        self.client_left = threading.Event()  # a held POST's sender went away
        self._arrived = threading.Condition()

    def accepted(self) -> list[Any]:
        """The bodies that got a 2xx, in order."""
        return [body for body, status in zip(self.bodies, self._answered, strict=False) if 200 <= status < 300]

    def wait_for_posts(self, count: int, timeout: float = 10) -> bool:
        """Until `count` POSTs were answered."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self._answered) >= count, timeout)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.paths.append(scope["path"])
        self.bodies.append(json.loads(body))
        if self.hold:
            self.held.set()
            while (await receive())["type"] != "http.disconnect":
                pass
            self.client_left.set()
            return
        status = self.statuses.pop(0) if self.statuses else 200
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(self.answer_body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": self.answer_body})
        with self._arrived:
            self._answered.append(status)
            self._arrived.notify_all()
