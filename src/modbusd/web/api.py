"""The running control API: an aiohttp runner on one TCP site, with the time-outs this API needs."""

import logging
import sys
from collections.abc import Iterable
from typing import Any

from modbusd import Server
from modbusd.web.app import DEFAULT_LIMITS, Limits, MissingDependency, Refused, aiohttp_web, check, make_app
from modbusd.web.checks import HostCheck
from modbusd.web.metrics import exposition, make_registry

log = logging.getLogger("modbusd.web")

DEFAULT_PORT = 8020
LOOPBACK = ("127.0.0.1", "localhost", "::1")
__all__ = ["DEFAULT_PORT", "LOOPBACK", "HttpApi", "MetricsApi", "MissingDependency", "make_metrics_app"]


class _OneLine(logging.LoggerAdapter):  # type: ignore[type-arg]  # generic only in typeshed
    """aiohttp's server logger, but what it would log with a traceback (a request its parser rejects: not HTTP,
    a header line too long) becomes one WARNING line: that is the client's mistake, not a bug to debug."""

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        detail = " ".join(str(exc).split())[:200] if exc is not None else ""
        self.logger.warning("control API: %s: %s", str(msg) % args, detail)


class HttpApi:
    """The running control API: `await HttpApi.start(...)`, then `await api.stop()`."""

    def __init__(self, runner: Any, host: str, port: int) -> None:
        self._runner = runner
        self.host = host
        self.port = port

    @classmethod
    async def start(
        cls, server: Server, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
        allow_hosts: Iterable[str] = (), limits: Limits = DEFAULT_LIMITS,
    ) -> "HttpApi":  # fmt: skip
        """Listen in the running loop. ValueError without a token off loopback; OSError when it cannot bind.

        `allow_hosts`: names besides loopback's and `host` that clients may put in the Host header (`checks.py`).
        `limits.header_timeout` closes a connection that has not sent a whole request's headers in that time,
        idle keep-alive connections included (aiohttp's keep-alive timer, which starts when the connection opens);
        after an answer given before the whole body came (408, 413), the rest is drained for `body_timeout` at most.
        """
        if host not in LOOPBACK and not token:
            raise ValueError(f"the control API can write anything: binding it to {host} needs a token "
                             "(--http-token, or token in the file's [http])")  # fmt: skip
        app = make_app(server, token=token, host=host, allow_hosts=allow_hosts, limits=limits)
        api = await cls.serve(app, host, port, limits)
        log.info("control API on http://%s:%d/", host, api.port)
        return api

    @classmethod
    async def serve(cls, app: Any, host: str, port: int, limits: Limits) -> "HttpApi":
        """Run `app` on one TCP site with this API's time-outs; OSError when it cannot bind."""
        web = aiohttp_web()
        runner = web.AppRunner(app, access_log=None, keepalive_timeout=limits.header_timeout,
                               lingering_time=limits.body_timeout, shutdown_timeout=limits.body_timeout,
                               logger=_OneLine(logging.getLogger("aiohttp.server"), {}))  # fmt: skip
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1] if runner.addresses else port
        return cls(runner, host, bound)

    async def stop(self) -> None:
        await self._runner.cleanup()


def make_metrics_app(server: Server, *, host: str = "127.0.0.1", limits: Limits = DEFAULT_LIMITS) -> Any:
    """The ``--metrics-port`` listener's application: ``GET /metrics`` alone. Read-only, and without a token.

    It can change nothing and shows counts only (no register values, no client addresses), as Prometheus exporters
    usually do. On a loopback address the Host check keeps web pages out (DNS rebinding, `checks.py`); on any
    other address the network reaches it directly anyway, and Prometheus sends whatever name its configuration
    has, so any Host is answered there.
    """
    web = aiohttp_web()
    hosts = HostCheck.build(host) if host in LOOPBACK else None
    registry = make_registry(server)  # ImportError without prometheus-client: the caller says so

    @web.middleware
    async def guard(request: Any, handler: Any) -> Any:
        try:
            check(request, hosts, None)
        except Refused as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return await handler(request)

    async def metrics(_request: Any) -> Any:
        body, content_type = exposition(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application(middlewares=[guard], client_max_size=limits.max_body)
    app.router.add_get("/metrics", metrics)
    return app


class MetricsApi:
    """The ``--metrics-port`` listener: `await MetricsApi.start(server, host=…, port=…)`, then `await api.stop()`."""

    @staticmethod
    async def start(server: Server, *, host: str = "127.0.0.1", port: int, limits: Limits = DEFAULT_LIMITS) -> HttpApi:
        api = await HttpApi.serve(make_metrics_app(server, host=host, limits=limits), host, port, limits)
        log.info("metrics on http://%s:%d/metrics", host, api.port)
        return api
