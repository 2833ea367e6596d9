"""Call square(4) on the math kite at http://127.0.0.1:6000/kite and print the result.

    python examples/square_client.py          # prints 16
"""

import asyncio
import sys

from kitelib import Client


async def main(url: str) -> None:
    async with Client(url, timeout=5) as client:
        print(await client.tell("square", 4))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:6000/kite"))
