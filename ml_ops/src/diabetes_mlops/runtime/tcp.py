"""Whether a TCP connection to a host opens, within bounds: before a client whose own retries
would take minutes to give up (databricks-sdk on a workspace host, the Spark Connect client on a
SPARK_REMOTE server); and a free loopback port for a server of ours."""

from __future__ import annotations

import socket
import threading
import time

DNS, CONNECT = "dns", "connect"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def open_problem(
    name: str, port: int, dns_seconds: float, connect_seconds: float
) -> tuple[str, str] | None:
    """None when a connection to `name`:`port` opens; else (stage, what happened): DNS, for a
    name that does not resolve or a resolver that does not answer in `dns_seconds`; CONNECT, for
    no address accepting a connection within `connect_seconds` (refused, no answer, ...)."""
    found: dict[str, object] = {}

    def lookup() -> None:  # getaddrinfo has no timeout: a daemon thread we stop waiting for
        try:
            found["addresses"] = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name=f"resolve {name}")
    thread.start()
    thread.join(dns_seconds)
    if thread.is_alive():
        return DNS, f"no DNS answer within {dns_seconds:.0f} s"
    if "error" in found:
        error = found["error"]
        reason = getattr(error, "strerror", None) or str(error)
        return DNS, f"the name does not resolve ({reason})"
    deadline = time.monotonic() + connect_seconds
    problem = "no address"
    for family, kind, proto, _, address in found["addresses"]:  # type: ignore[union-attr]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(remaining)
                sock.connect(address)
                return None
        except TimeoutError:
            problem = f"no answer within {connect_seconds:.0f} s"
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
    return CONNECT, problem
