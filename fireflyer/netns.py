"""Several "hosts" on one machine: network namespaces joined by veth pairs to one bridge.

Used by tests (and usable by hand) to run services and job ranks as if on separate hosts, each with
its own address and loopback, talking over real TCP through the bridge. Needs root and iproute2.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be created here (not root, no iproute2, or the kernel refuses)."""


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {out.stderr.strip()}")


@dataclass
class HostNet:
    """``count`` namespaces ``<prefix>0..`` with addresses ``<subnet>.1..`` on a private bridge.

    With ``gateway`` the bridge itself gets ``<subnet>.254``, so this (the root) namespace reaches
    every host too: a test driver outside the "hosts" can talk to their services.
    """

    count: int
    subnet: str = field(default_factory=lambda: f"10.231.{random.randint(1, 250)}")
    gateway: bool = False
    prefix: str = field(default_factory=lambda: "ff" + uuid.uuid4().hex[:6])
    names: list[str] = field(default_factory=list)

    def address(self, i: int) -> str:
        """The IPv4 address of host ``i``."""
        return f"{self.subnet}.{i + 1}"

    @property
    def gateway_address(self) -> str:
        """The root namespace's address on the bridge (only with ``gateway``)."""
        return f"{self.subnet}.254"

    def host_of(self, address: str) -> int:
        """The index of the host that has ``address``."""
        for i in range(self.count):
            if self.address(i) == address:
                return i
        raise KeyError(f"{address} is not an address of this HostNet ({self.subnet}.1..{self.count})")

    def argv(self, i: int, argv: list[str]) -> list[str]:
        """``argv`` run inside host ``i``'s namespace."""
        return ["ip", "netns", "exec", self.names[i], *argv]

    def up(self) -> HostNet:
        """Create the bridge, the namespaces and their links; undo everything on failure."""
        if shutil.which("ip") is None:
            raise NetnsUnavailable("iproute2 is not installed")
        bridge = self.prefix + "br"
        try:
            _ip("link", "add", bridge, "type", "bridge")
            _ip("link", "set", bridge, "up")
            if self.gateway:
                _ip("addr", "add", f"{self.gateway_address}/24", "dev", bridge)
            for i in range(self.count):
                ns = f"{self.prefix}n{i}"
                _ip("netns", "add", ns)
                self.names.append(ns)
                host_end, ns_end = f"{self.prefix}h{i}", f"{self.prefix}v{i}"
                _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
                _ip("link", "set", host_end, "master", bridge)
                _ip("link", "set", host_end, "up")
                _ip("link", "set", ns_end, "netns", ns)
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", ns_end)
                _ip("-n", ns, "link", "set", ns_end, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except NetnsUnavailable:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Delete the namespaces (their veth ends go with them) and the bridge."""
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for i in range(self.count):
            subprocess.run(["ip", "link", "del", f"{self.prefix}h{i}"], capture_output=True)
        subprocess.run(["ip", "link", "del", self.prefix + "br"], capture_output=True)
        self.names = []

    def __enter__(self) -> HostNet:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
