"""The studio answers only itself: a request naming another Host (DNS rebinding) or coming from another site's
page (its Origin) is refused before any route runs."""

from __future__ import annotations


class SameOrigin:
    """ASGI middleware: 403 for a request whose Host is not one the page is served on, or whose Origin (sent by
    browsers with every cross-site POST) is another site's. Stops DNS rebinding and a hostile page posting here."""

    def __init__(self, app, hosts: tuple[str, ...]):
        self.app, self.hosts = app, {h.lower() for h in hosts}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and self.hosts:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
            host = headers.get("host", "").lower()
            origin = headers.get("origin")
            if host not in self.hosts or (
                origin is not None and origin.lower() not in {f"http://{h}" for h in self.hosts}
            ):
                body = b'{"detail": "refused: this page only answers itself (Host or Origin is another site)"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
