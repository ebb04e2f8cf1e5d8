"""proxy_drivers.rs with asyncpg: its statement cache prepares every statement with arguments,
under names (__asyncpg_stmt_1__, ...) that two connections share; transactions in
`async with conn.transaction()` blocks."""

import asyncio
import io

import asyncpg

from driverlib import ARRAY, BYTES, MOMENT, NUMBER, TARGET, acheck, aexpect_error, say

PARAMETERS = ("server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
              "integer_datetimes", "standard_conforming_strings")


def state(e):
    return f"{e.sqlstate} {e}"


class Rollback(Exception):
    pass


async def main():
    a = await asyncpg.connect(TARGET["url"])
    b = await asyncpg.connect(TARGET["url"])
    settings = a.get_settings()
    say("connect", " | ".join(f"{p}={getattr(settings, p)}" for p in PARAMETERS)
        + f" | server_version={a.get_server_version()}")

    async def cleanup():
        await a.execute("DELETE FROM items")
        return "done"

    await acheck("cleanup", cleanup)
    # Without arguments, execute() sends a simple query (here two statements).
    await acheck("simple", lambda: a.execute("SELECT 1; SELECT 'two'"))
    await acheck("simple row", lambda: a.fetchrow("SELECT 1, 'two'"))
    await acheck("params", lambda: a.fetchrow(
        "SELECT $1::int + 1, $2::text || '!', $3::timestamptz + interval '1 hour', "
        "$4::numeric * 2, $5::bytea, $6::int IS NULL, $7::int[] || 4",
        41, "héllo", MOMENT, NUMBER, BYTES, None, ARRAY))

    async def cached():
        return [await a.fetchval("SELECT $1::int * 10", i) for i in range(7)]

    await acheck("cached", cached)

    async def commit():
        async with a.transaction():
            await a.execute("INSERT INTO items VALUES ($1), ($2)", 1, 2)
        return f"{await b.fetchval('SELECT count(*) FROM items')} rows seen by the other"

    async def rollback():
        inside = None
        try:
            async with a.transaction():
                await a.execute("INSERT INTO items VALUES (3)")
                inside = await a.fetchval("SELECT count(*) FROM items")
                raise Rollback()
        except Rollback:
            pass
        after = await a.fetchval("SELECT count(*) FROM items")
        seen = await b.fetchval("SELECT count(*) FROM items")
        return f"{inside} inside, {after} after, {seen} seen by the other"

    async def copy():
        done = await a.copy_records_to_table("items", records=[(4,), (5,)], columns=["id"])
        out = io.BytesIO()
        await a.copy_from_query("SELECT id FROM items ORDER BY id", output=out)
        return f"{done} out: {out.getvalue().split()}"

    await acheck("commit", commit)
    await acheck("rollback", rollback)
    await acheck("copy", copy)
    await acheck("error", lambda: aexpect_error(lambda: a.fetchval("SELECT 1 / $1", 0), state))
    await acheck("after error", lambda: a.fetchval("SELECT 2"))

    async def failed_transaction():
        tx = b.transaction()
        await tx.start()
        first = await aexpect_error(lambda: b.fetchval("SELECT 1 / 0"), state)
        following = await aexpect_error(lambda: b.fetchval("SELECT 1"), state)
        await tx.rollback()
        return f"{first} | {following} | then {await b.fetchval('SELECT 4')}"

    await acheck("error in transaction", failed_transaction)
    await acheck("set timezone", lambda: a.execute("SET TIME ZONE 'Asia/Tokyo'"))
    await acheck("timezone", lambda: a.fetchval("SHOW TimeZone"))
    say("timezone status", a.get_settings().TimeZone)

    async def rendered(c):
        row = await c.fetchrow("SELECT $1::timestamptz::text, $1::timestamptz", MOMENT)
        return f"{row[0]} {row[1].isoformat()}"

    await acheck("timezone rendered", lambda: rendered(a))
    for i in (1, 2, 3):
        if i == 2:
            await acheck("b sets", lambda: b.execute("SET TIME ZONE 'America/New_York'"))

        async def zones():
            return f"a={await a.fetchval('SHOW TimeZone')} b={await b.fetchval('SHOW TimeZone')}"

        await acheck(f"interleave {i}", zones)

    async def statements():
        seen = []
        for i in range(5):
            seen.append(await a.fetchval("SELECT $1::int + 100", i))
            seen.append(await b.fetchval("SELECT $1::int - 100", i))
        return seen

    await acheck("interleave statements", statements)

    async def prepared():
        # Explicitly prepared, as apps do for hot statements, each kept and run in turns. Each
        # is run once at once: asyncpg prepares without a Sync, so until its next statement a
        # transaction-pooling proxy cannot tell the server connection free (b would wait).
        pa = await a.prepare("SELECT $1::text || 'a'")
        seen = [await pa.fetchval("first")]
        pb = await b.prepare("SELECT $1::int * 3")
        seen.append(await pb.fetchval(-1))
        return seen + [v for i in range(3) for v in (await pa.fetchval(str(i)), await pb.fetchval(i))]

    await acheck("interleave prepared", prepared)
    await acheck("interleave rendered a", lambda: rendered(a))
    await acheck("interleave rendered b", lambda: rendered(b))
    say("interleave status", f"a={a.get_settings().TimeZone} b={b.get_settings().TimeZone}")
    await a.close()
    await b.close()
    say("close", f"{a.is_closed()} {b.is_closed()}")
    c = await asyncpg.connect(TARGET["url"])
    await acheck("after close", lambda: c.fetchval("SHOW TimeZone"))
    await c.close()


asyncio.run(main())
