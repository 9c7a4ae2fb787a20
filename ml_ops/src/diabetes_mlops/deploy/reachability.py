"""A quick check that the workspace host exists and accepts connections, before the SDK's retries.

databricks-sdk 0.156.0 retries a connection error (a name that does not resolve, a refused
connection) as it retries 429 and 503, for retry_timeout_seconds (300 s by default): once in
Config() (its /.well-known/databricks-config probe) and again on the first API call
(_BaseClient._is_retryable, databricks/sdk/_base_client.py). A mistyped host so took ten minutes
to fail. The probe here (a DNS lookup and a TCP connect, each bounded) fails such a host in
seconds with one line.

A host that accepts connections may still not be a workspace: one that never answers, resets
the connection, speaks plain HTTP on an https:// URL, or answers with a web page (a login page,
a wrong URL). Each took the SDK 10 minutes of retries or ended in a traceback. `check_answers`
makes one authenticated request with a bounded wait and names what happened. A host that
answers as the Databricks API does (JSON, or 429 and 503 while it throttles or restarts) is left
to the SDK, whose long retries are right for a workspace that is busy or briefly down.
"""

from __future__ import annotations

import urllib.parse

import requests
import requests.utils
from databricks.sdk.config import Config

from diabetes_mlops.runtime.errors import UserError, first_line
from diabetes_mlops.runtime.tcp import DNS, open_problem

# Each step's bound: a lookup, a connect and an answer together stay under 30 s.
DNS_SECONDS = 8.0
CONNECT_SECONDS = 8.0
ANSWER_SECONDS = 10.0
# Before authenticating, the path the SDK itself asks first (a 404 there is an answer too);
# after, one every workspace serves to any authenticated caller (the deploy asks it anyway).
FIRST_PATH = "/.well-known/databricks-config"
PROBE_PATH = "/api/2.0/preview/scim/v2/Me"
# What a workspace answers while it throttles or restarts: the SDK's retries are for these.
BUSY = (429, 503)


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
            answer_of(self.host, FIRST_PATH, {})  # before the SDK's, which would wait minutes
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
    found = open_problem(name, port, DNS_SECONDS, CONNECT_SECONDS)
    if found is None:
        return
    stage, problem = found
    if stage == DNS:
        raise Unreachable(f"cannot reach {what}: {problem}")
    raise Unreachable(f"cannot reach {what} on port {port}: {problem}")


def check_answers(host: str, headers: dict[str, str]) -> None:
    """Raise Unreachable, naming the host and what happened, unless it answers one
    (authenticated) request as the Databricks API would."""
    answer = answer_of(host, PROBE_PATH, headers)
    kind = answer.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
    if answer.status_code in BUSY or kind == "application/json":
        return
    said = "answered HTML" if kind == "text/html" else f"answered {kind}"
    raise Unreachable(
        f"workspace host {_name(host)} {said} (HTTP {answer.status_code}), not the Databricks"
        " API: check the host URL (a login page or another site answers there)"
    )


def answer_of(host: str, path: str, headers: dict[str, str]) -> requests.Response:
    """One GET of `path`, within CONNECT_SECONDS + ANSWER_SECONDS; Unreachable, naming what
    happened, when no HTTP answer comes (no answer, a reset, no TLS on an https:// URL)."""
    url = (host if "://" in host else f"https://{host}").rstrip("/") + path
    what = f"workspace host {_name(host)}"
    try:
        return requests.get(
            url, headers=headers, timeout=(CONNECT_SECONDS, ANSWER_SECONDS), allow_redirects=False
        )
    except requests.exceptions.SSLError as exc:
        raise Unreachable(
            f"{what}: the TLS handshake failed (is it a plain http:// port?): {_reason(exc)}"
        ) from None
    except requests.exceptions.Timeout:
        raise Unreachable(f"{what}: no answer within {ANSWER_SECONDS:.0f} s") from None
    except requests.exceptions.ConnectionError as exc:
        raise Unreachable(f"{what}: the connection failed: {_reason(exc)}") from None


def _name(host: str) -> str:
    return urllib.parse.urlsplit(host if "://" in host else f"https://{host}").hostname or host


def _reason(exc: Exception) -> str:
    """What a requests error says happened, in a few words (its text nests urllib3's)."""
    text = str(exc)
    for known, said in (
        ("Connection reset by peer", "the connection was reset"),
        ("Remote end closed connection", "the host closed the connection without answering"),
        ("WRONG_VERSION_NUMBER", "the port does not speak TLS"),
        ("wrong version number", "the port does not speak TLS"),
    ):
        if known in text:
            return said
    return first_line(exc, limit=160)


def _proxy(url: str, scheme: str) -> urllib.parse.SplitResult | None:
    proxies = requests.utils.get_environ_proxies(url)
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    return urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
