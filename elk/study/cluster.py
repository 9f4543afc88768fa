"""A Dask scheduler address, checked before a study creates anything: its form, then that it answers.

A malformed address used to escape as a ``ValueError`` traceback from deep inside Dask,
and an unreachable one took 30 s and left an empty study folder behind. Here the
address is parsed first (one line naming the expected form), then, when asked, one
connection is tried with a short, configurable timeout, all before the study folder exists.
"""
from __future__ import annotations

import math
import os
import re

from elk.study.point import StudyError

#: Dask's transports.
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
#: Seconds to wait for a scheduler to answer (``elk sweep --connect-timeout``, ``ELK_DASK_CONNECT_TIMEOUT``).
DEFAULT_CONNECT_TIMEOUT = 5.0
FORM = "tcp://HOST:PORT (or tls://, ws://, wss://, ucx://; HOST:PORT means tcp) or 'local'"

_ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)"
                      r"(?::(?P<port>[^/]*))?/?$")


def check_address(address: str) -> str:
    """The address as given, or StudyError naming what is wrong with it (no connection is tried)."""
    if address == "local":
        return address
    if not isinstance(address, str) or not address.strip():
        raise StudyError(f"--address {address!r}: empty; expected {FORM}")
    m = _ADDRESS.match(address.strip())
    if m is None:
        raise StudyError(f"--address {address!r}: not an address; expected {FORM}")
    scheme = (m.group("scheme") or "tcp").lower()
    if scheme not in SCHEMES:
        raise StudyError(f"--address {address!r}: unknown transport '{scheme}' (known: {', '.join(SCHEMES)})")
    port = m.group("port")
    if port is not None and scheme != "inproc":
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise StudyError(f"--address {address!r}: the port must be a number from 1 to 65535, got {port!r}")
    return address.strip()


def connect_timeout(value: float | None = None) -> float:
    """The connect timeout in seconds: ``value``, else ``ELK_DASK_CONNECT_TIMEOUT``, else the default."""
    source = "--connect-timeout"
    if value is None:
        text = os.environ.get("ELK_DASK_CONNECT_TIMEOUT")
        if not text:
            return DEFAULT_CONNECT_TIMEOUT
        source = "ELK_DASK_CONNECT_TIMEOUT"
        try:
            value = float(text)
        except ValueError:
            raise StudyError(f"{source}={text!r}: expected a positive number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise StudyError(f"{source} {value}: expected a positive, finite number of seconds")
    return float(value)


def probe_scheduler(address: str, timeout: float) -> None:
    """Connect to the scheduler once and close again, or StudyError within about ``timeout`` seconds."""
    if address == "local":
        return
    try:
        from distributed import Client
    except ImportError:
        raise StudyError("a Dask address needs the 'cluster' extra: pip install 'elk-icca[cluster]'") from None
    try:
        client = Client(address, timeout=f"{timeout}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise StudyError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                         f"(--connect-timeout): {exc}") from None
    except ValueError as exc:  # an address Dask cannot resolve
        raise StudyError(f"--address {address!r}: {exc}") from None
    client.close()


__all__ = ["SCHEMES", "DEFAULT_CONNECT_TIMEOUT", "check_address", "connect_timeout", "probe_scheduler"]
