"""Which requests come from a page the service trusts: the Host rule and the cross-site rule.

A service on 127.0.0.1 without a token is reachable from any web page the user opens: the page
cannot read another origin's answers, but it can (1) point a name of its own at 127.0.0.1 (DNS
rebinding: ``evil.example`` resolves to 127.0.0.1 after the page loaded), after which the browser
takes the service for ``evil.example`` and lets the page read the camera's frames and stats; and
(2) send a form POST to the service (the browser sends those across sites without asking). The
Host rule stops (1): a request must name this machine in its Host header. The cross-site rule
stops (2): a POST whose ``Origin`` is another origin, or whose ``Sec-Fetch-Site`` says
another site sent it, is refused. Clients that are not browsers (curl, scripts, Home Assistant)
send neither header and are let through. Pure functions of header values: no Flask here.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Optional
from urllib.parse import urlsplit

# Names of this machine a local client may use, whatever address the service listens on.
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})
# Sec-Fetch-Site values of a request the page itself (or the user, typing the address) made.
# "same-site" is refused too: http://localhost:3000 is the same site as the service's port 8080.
_OWN_FETCH = frozenset({"same-origin", "none"})


def host_name(host_header: str) -> str:
    """The name in a Host header, lower case, without port, brackets or a final dot:
    ``"[::1]:8080"`` -> ``"::1"``, ``"Camera.LAN.:80"`` -> ``"camera.lan"``."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1:text.find("]")] if "]" in text else text[1:]
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name in LOCAL_NAMES or name.endswith(".localhost")


class HostRule:
    """Host names a request may give: this machine's (``localhost``, loopback addresses), the
    address the service listens on, and ``web.allowed_hosts``. ``enforced`` False lets every
    name through (a service with a token and no allowed_hosts: the token protects it)."""

    def __init__(self, allowed: Iterable[str], enforced: bool) -> None:
        self.allowed = {host_name(name) for name in allowed}
        self.enforced = enforced

    def add(self, name: str) -> None:
        """Allow the address the server is bound to (known once it listens)."""
        name = host_name(name)
        # 0.0.0.0 and :: (every address) name no host.
        if name and not (_is_ip(name) and ipaddress.ip_address(name).is_unspecified):
            self.allowed.add(name)

    def refusal(self, host_header: Optional[str]) -> Optional[str]:
        """Why a request with this Host header is refused (a message naming the fix), or None."""
        if not self.enforced:
            return None
        name = host_name(host_header or "")
        if name and (_is_loopback(name) or name in self.allowed):
            return None
        shown = ", ".join(sorted({"localhost", "127.0.0.1", "[::1]", *self.allowed}))
        return (f"Host '{host_header or ''}' is not a name of this service (allowed: {shown}); a page elsewhere "
                "may not reach it through a name of its own. Reaching it by another name on purpose? Add the name "
                "to web.allowed_hosts")


def cross_site_refusal(method: str, origin: Optional[str], fetch_site: Optional[str],
                       host_header: Optional[str]) -> Optional[str]:
    """Why a state-changing request (not GET, HEAD or OPTIONS) from another site's page is refused,
    or None: its ``Origin`` is not this service's (``http(s)://`` + the Host header), or its
    ``Sec-Fetch-Site`` is not same-origin. Requests without either header (not from a browser)
    pass."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return None
    if fetch_site is not None and fetch_site.strip().lower() not in _OWN_FETCH:
        return (f"a {method} sent by another site's page (Sec-Fetch-Site: {fetch_site}) is refused; use this "
                "service's own page, or a client that is not a browser")
    if origin is not None:
        parts = urlsplit(origin.strip())
        own = (host_header or "").strip().lower()
        if origin.strip() == "null" or parts.scheme not in ("http", "https") or parts.netloc.lower() != own:
            return (f"a {method} from the page of another origin ({origin}) is refused; use this service's own "
                    "page, or a client that is not a browser")
    return None
