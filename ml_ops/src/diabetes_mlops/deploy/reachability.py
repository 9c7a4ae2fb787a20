"""A quick check that the workspace host exists and accepts connections, before the SDK's retries.

databricks-sdk 0.156.0 retries a connection error (a name that does not resolve, a refused
connection) as it retries 429 and 503, for retry_timeout_seconds (300 s by default): once in
Config() (its /.well-known/databricks-config probe) and again on the first API call
(_BaseClient._is_retryable, databricks/sdk/_base_client.py). A mistyped host so took ten minutes
to fail. The probe here (a DNS lookup and a TCP connect, each bounded) fails such a host in
seconds with one line; a host that accepts connections is left to the SDK, whose long retries
are right for a workspace that throttles or is briefly down.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse

import requests.utils
from databricks.sdk.config import Config

from diabetes_mlops.runtime.errors import UserError

# Each step's bound: a lookup and a connect together stay well under 30 s.
DNS_SECONDS = 10.0
CONNECT_SECONDS = 10.0


class Unreachable(UserError, ConnectionError):
    """The workspace host (or the proxy in front of it) does not resolve or accept connections."""


class ProbedConfig(Config):
    """The SDK's Config, probing the host once the SDK has found it (environment, arguments or
    profile, exactly as the SDK resolves them) and before its first request, the host metadata
    probe. This hooks two private parts of databricks-sdk 0.156 (requirements.txt pins it): the step
    `_resolve_host_metadata`, and `attributes()`, which reads the settings a Config has from the
    class's own __dict__ and caches them in `_attributes` (so a subclass takes Config's list).
    `probed` tells `connect` whether the hook ran: with a later SDK without that step the probe
    still runs, after Config()."""

    _attributes = Config.attributes()
    probed = False

    def _resolve_host_metadata(self) -> None:
        if self.host:
            check_reachable(self.host)
            self.probed = True
        super()._resolve_host_metadata()


def check_reachable(host: str) -> None:
    """Raise Unreachable, naming the host and the problem, unless a TCP connection to it (or to
    the proxy that requests would use for it, from HTTPS_PROXY/NO_PROXY) opens in time."""
    url = host if "://" in host else f"https://{host}"
    parsed = urllib.parse.urlsplit(url)
    name, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    what = f"workspace host {name}"
    proxy = _proxy(url, parsed.scheme)
    if proxy is not None:
        what = f"proxy {proxy.hostname} for workspace host {name}"
        name, port = proxy.hostname or "", proxy.port or (443 if proxy.scheme == "https" else 80)
    addresses = _resolve(name, port, what)
    deadline = time.monotonic() + CONNECT_SECONDS
    problem = "no address"
    for family, kind, proto, _, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(remaining)
                sock.connect(address)
                return
        except TimeoutError:
            problem = f"no answer within {CONNECT_SECONDS:.0f} s"
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    raise Unreachable(f"cannot reach {what} on port {port}: {problem}")


def _proxy(url: str, scheme: str) -> urllib.parse.SplitResult | None:
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")


def _resolve(name: str, port: int, what: str) -> list:
    """getaddrinfo has no timeout of its own: it runs in a daemon thread we stop waiting for."""
    found: dict[str, object] = {}

    def lookup() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name=f"resolve {name}")
    thread.start()
    thread.join(DNS_SECONDS)
    if thread.is_alive():
        raise Unreachable(f"cannot reach {what}: no DNS answer within {DNS_SECONDS:.0f} s")
    if "error" in found:
        error = found["error"]
        reason = getattr(error, "strerror", None) or str(error)
        raise Unreachable(f"cannot reach {what}: the name does not resolve ({reason})")
    return found["addresses"]  # type: ignore[return-value]
