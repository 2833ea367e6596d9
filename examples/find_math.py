"""Find every math kite through Kontrol and call it with the token Kontrol issued.

Needs a kite.key for the same Kontrol as the math kite (on one machine, the
one ``kitectl kontrol serve`` writes on first start).

    python examples/find_math.py
"""

import asyncio

from kitelib import Kite


async def main() -> None:
    caller = Kite("math-caller", "1.0.0")
    clients = await caller.get_kites(name="math")
    if not clients:
        raise SystemExit("no math kite is registered: start examples/math_kite.py first")
    for client in clients:
        async with client:
            print(client.identity, await client.tell("square", 4), await client.tell("whoami"))
    await caller.kontrol.close()


asyncio.run(main())
