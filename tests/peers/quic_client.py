"""A real QUIC client (aioquic) for the destination-naming tests: sends HTTP/3 Initials with the
server name it is given to ADDR PORT, where nothing needs to answer; gives up after two seconds.

usage: quic_client.py ADDR PORT SERVER_NAME
Prints the ground truth: {"server_name": ..., "alpn": [...]}.
"""

import asyncio
import json
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration


async def attempt(addr: str, port: int, name: str) -> None:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=name)
    cfg.verify_mode = ssl.CERT_NONE
    async with connect(addr, port, configuration=cfg, wait_connected=True):
        pass


def main() -> None:
    addr, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    try:
        asyncio.run(asyncio.wait_for(attempt(addr, port, name), 2))
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    print(json.dumps({"server_name": name, "alpn": ["h3"]}))


main()
