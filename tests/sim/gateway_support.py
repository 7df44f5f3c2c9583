"""Helpers for the tests that talk to the simulated gateway: the way the monitor connects with
ib_async, a raw socket client for protocol abuse and orders, and a small Reg T scenario."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest
from ib_async import IB

from monitor.sim.protocol import frame, split_fields

HOST = "127.0.0.1"

REG_T = """
    # Reg T worked example (margin-rules.md section 5): deposit 10,000, buy 500 @ 40.
    name = "regt"
    {top}
    [instruments.XYZ]
    con_id = 4242
    price = 40.0
    [[accounts]]
    id = "DU9000001"
    cash = {{ USD = 10000.0 }}
    {steps}
"""


def reg_t(top: str = "", steps: str = "") -> str:
    """The Reg T scenario text with extra top-level keys and steps."""
    return REG_T.format(top=top, steps=steps)


def run(coroutine: Any, timeout: float = 20.0) -> Any:
    """Run one async test body with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def connect(port: int, client_id: int = 1, timeout: float = 5.0, **options: Any) -> IB:
    """A read-only ib_async connection, the way the monitor connects."""
    ib = IB()
    ib.RaiseRequestErrors = True
    await ib.connectAsync(HOST, port, clientId=client_id, readonly=True, timeout=timeout, **options)
    return ib


def value(ib: IB, account: str, tag: str, currency: str) -> str | None:
    """The latest account value ib_async holds for (account, tag, currency)."""
    for item in ib.accountValues(account):
        if item.tag == tag and item.currency == currency and not item.modelCode:
            return item.value
    return None


def no_timeouts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ib_async's own "... request timed out" errors (a request left unanswered)."""
    return [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]


class RawClient:
    """A minimal TWS API client on a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        self.buffer = b""

    def send_fields(self, *fields: object) -> None:
        self.sock.sendall(frame(list(fields)))

    def read(self) -> list[str]:
        while True:
            if len(self.buffer) >= 4:
                size = struct.unpack(">I", self.buffer[:4])[0]
                if len(self.buffer) >= 4 + size:
                    payload, self.buffer = self.buffer[4 : 4 + size], self.buffer[4 + size :]
                    return split_fields(payload)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buffer += data

    def read_until(self, message_id: str) -> list[str]:
        while True:
            fields = self.read()
            if fields and fields[0] == message_id:
                return fields

    def close(self) -> None:
        self.sock.close()


def version_frame(text: str) -> bytes:
    """The handshake's version range, framed without the NUL a field would carry."""
    payload = text.encode()
    return struct.pack(">I", len(payload)) + payload


def raw_start(port: int, client_id: int) -> RawClient:
    """Connect, hand-shake and start the API; returns after nextValidId."""
    client = RawClient(port)
    client.sock.sendall(b"API\0" + version_frame("v100..176"))
    version, _ = client.read()
    assert version == "176"
    client.send_fields(71, 2, client_id, "")
    client.read_until("9")
    return client
