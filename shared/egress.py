"""Outbound calls to URLs a tenant chose (webhook endpoints), kept out of the cluster.

`resolve` refuses a URL whose host is, or resolves to, an address that is not globally routable (loopback, RFC 1918,
link-local such as the cloud metadata address, CGNAT, unique-local, multicast, reserved), unless the operator allows
private targets. The call is then made to the address that was checked (`pinned`): the host name is only sent as
the `Host` header and the TLS server name, so a DNS answer that changes between the check and the connection
(rebinding) can't send it elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EgressRefused(ValueError):
    """The URL may not be called: its scheme, its form, or where it leads."""


@dataclass(frozen=True)
class Target:
    url: httpx.URL
    address: IPAddress

    def pinned(self) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        """The URL to connect to (the checked address in place of the host), and the headers and extensions that
        keep the request addressed to the host: `Host`, and the TLS server name checked against its certificate."""
        host = self.url.host
        ip = str(self.address)
        url = self.url.copy_with(host=ip)
        port = self.url.port
        host_header = host if port is None else f"{host}:{port}"
        extensions: dict[str, Any] = {"sni_hostname": host} if self.url.scheme == "https" else {}
        return url, {"Host": host_header}, extensions


def parse(url: str) -> httpx.URL:
    """The URL, if it has the form of an endpoint: http(s), a host, no user info, no fragment."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise EgressRefused(f"not a URL: {exc}") from exc
    if parsed.scheme not in ("https", "http"):
        raise EgressRefused("the URL must be http or https")
    if not parsed.host:
        raise EgressRefused("the URL has no host")
    if parsed.userinfo:
        raise EgressRefused("the URL may not carry a user name or password")
    if parsed.fragment:
        raise EgressRefused("the URL may not have a fragment")
    return parsed


def is_public(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL and the address to call it at, refused if any address its host resolves to is not public (unless
    `allow_private`)."""
    parsed = parse(url)
    host = parsed.host
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parsed.port or (443 if parsed.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise EgressRefused(f"the host {host} does not resolve") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise EgressRefused(f"the host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise EgressRefused(f"the host {host} leads to {address}, which is not a public address")
    return Target(parsed, addresses[0])
