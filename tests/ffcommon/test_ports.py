"""free_port never hands out one port twice in a process, even when the OS offers it again."""

from __future__ import annotations

import socket

from ffcommon import ports


def test_free_port_is_distinct_across_many_calls() -> None:
    picked = [ports.free_port() for _ in range(500)]
    assert len(set(picked)) == len(picked)


def test_free_port_skips_a_port_the_os_offers_again(monkeypatch) -> None:
    """A fake socket that offers the same port first each time: the second caller gets another."""
    offers = iter([40001, 40001, 40002])

    class OneSocket:
        def __init__(self, *args: object) -> None:
            self.port = next(offers)

        def __enter__(self) -> OneSocket:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(ports, "_HANDED_OUT", type(ports._HANDED_OUT)(maxlen=16))
    monkeypatch.setattr(socket, "socket", OneSocket)
    assert ports.free_port() == 40001
    assert ports.free_port() == 40002
