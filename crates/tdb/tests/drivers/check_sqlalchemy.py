"""proxy_drivers.rs with SQLAlchemy 2 on psycopg 3 or on asyncpg (the second argument): an
engine and its pool, Core statements and `text()`. `a` runs in AUTOCOMMIT, `b` in transactions
of its own (`with b.begin()`), as apps do. The checks are written once, for SQLAlchemy's sync
API; on asyncpg they run through `AsyncConnection.run_sync`, which drives the same asyncpg
dialect (and its prepared statement cache) as `await conn.execute(...)`."""

import asyncio

import sqlalchemy as sa

from driverlib import ARG, ARRAY, BYTES, MOMENT, NUMBER, TARGET, check, expect_error, say

ITEMS = sa.Table("items", sa.MetaData(), sa.Column("id", sa.Integer))


def url():
    query = {"host": TARGET["host"]} if TARGET["host"].startswith("/") else {}
    return sa.engine.URL.create(
        f"postgresql+{ARG}", username=TARGET["user"], password=TARGET["password"],
        host=None if query else TARGET["host"], port=TARGET["port"],
        database=TARGET["database"], query=query)


def state(e):
    orig = getattr(e, "orig", None)
    if orig is None:
        return f"{type(e).__name__}"
    return f"{getattr(orig, 'sqlstate', None)} {str(orig).splitlines()[0]}"


def checks(a, b):
    """Every check on `a` (AUTOCOMMIT) and `b`, sync SQLAlchemy connections."""

    def in_b(stmt, params=None):
        with b.begin():
            return b.execute(stmt, params or {}).all()

    def count(c):
        stmt = sa.select(sa.func.count()).select_from(ITEMS)
        return c.execute(stmt).scalar() if c is a else in_b(stmt)[0][0]

    say("connect", f"{a.dialect.server_version_info} {a.dialect.default_schema_name}")
    check("cleanup", lambda: a.execute(ITEMS.delete()) and "done")
    check("simple", lambda: a.exec_driver_sql("SELECT 1, 'two'").all())
    check("params", lambda: a.execute(sa.text(
        "SELECT CAST(:i AS int) + 1, CAST(:t AS text) || '!', "
        "CAST(:ts AS timestamptz) + interval '1 hour', CAST(:n AS numeric) * 2, "
        "CAST(:y AS bytea), CAST(:z AS int) IS NULL, CAST(:arr AS int[]) || 4"),
        dict(i=41, t="héllo", ts=MOMENT, n=NUMBER, y=BYTES, z=None, arr=ARRAY)).all())
    cached = sa.select(sa.bindparam("i", type_=sa.Integer) * 10)
    check("cached", lambda: [a.execute(cached, {"i": i}).scalar() for i in range(7)])

    def commit():
        with b.begin():
            b.execute(ITEMS.insert().values([{"id": 1}, {"id": 2}]))
        return f"{count(a)} rows seen by the other"

    def rollback():
        tx = b.begin()
        b.execute(ITEMS.insert().values(id=3))
        inside = b.execute(sa.select(sa.func.count()).select_from(ITEMS)).scalar()
        tx.rollback()
        return f"{inside} inside, {count(b)} after, {count(a)} seen by the other"

    check("commit", commit)
    check("rollback", rollback)
    check("error", lambda: expect_error(
        lambda: a.execute(sa.text("SELECT 1 / CAST(:z AS int)"), {"z": 0}), state))
    check("after error", lambda: a.execute(sa.text("SELECT 2")).scalar())

    def failed_transaction():
        tx = b.begin()
        first = expect_error(lambda: b.execute(sa.text("SELECT 1 / 0")), state)
        following = expect_error(lambda: b.execute(sa.text("SELECT 1")), state)
        tx.rollback()
        return f"{first} | {following} | then {in_b(sa.text('SELECT 4'))[0][0]}"

    check("error in transaction", failed_transaction)
    check("set timezone", lambda: a.execute(sa.text("SET TIME ZONE 'Asia/Tokyo'")) and "ok")
    show = sa.text("SHOW TimeZone")
    check("timezone", lambda: a.execute(show).scalar())
    moment = sa.text("SELECT CAST(:m AS timestamptz)::text, CAST(:m AS timestamptz)")

    def rendered(c):
        row = (c.execute(moment, {"m": MOMENT}).one() if c is a else in_b(moment, {"m": MOMENT})[0])
        return f"{row[0]} {row[1].isoformat()}"

    check("timezone rendered", lambda: rendered(a))
    for i in (1, 2, 3):
        if i == 2:
            def set_b():
                with b.begin():
                    b.execute(sa.text("SET TIME ZONE 'America/New_York'"))
                return "ok"

            check("b sets", set_b)
        check(f"interleave {i}", lambda: f"a={a.execute(show).scalar()} b={in_b(show)[0][0]}")
    plus = sa.select(sa.bindparam("i", type_=sa.Integer) + 100)
    minus = sa.select(sa.bindparam("i", type_=sa.Integer) - 100)
    check("interleave statements", lambda: [
        v for i in range(6)
        for v in (a.execute(plus, {"i": i}).scalar(), in_b(minus, {"i": i})[0][0])])
    check("interleave rendered a", lambda: rendered(a))
    check("interleave rendered b", lambda: rendered(b))


def executemany(c, d):
    """Rows inserted by `c` with executemany (psycopg sends it in a pipeline, asyncpg as one
    batch), then counted by `d`."""

    def run():
        with c.begin():
            c.execute(ITEMS.insert(), [{"id": 7}, {"id": 8}])
        with d.begin():
            seen = d.execute(sa.text("SELECT count(*) FROM items WHERE id > 6")).scalar()
        return f"{seen} rows seen by the other"

    check("executemany", run)


def pooled(c):
    """A connection from the pool again: one of the two before, its session as they left it."""
    with c.begin():
        return c.execute(sa.text("SHOW TimeZone")).scalar()


def sync_main():
    engine = sa.create_engine(url(), pool_size=2, pool_pre_ping=True)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as a:
        with engine.connect() as b:
            checks(a, b)
    with engine.connect() as c:
        check("pooled", lambda: pooled(c))
    with engine.connect() as c, engine.connect() as d:
        executemany(c, d)
    engine.dispose()
    say("close", engine.pool.checkedout())
    with sa.create_engine(url()).connect() as c:
        check("after close", lambda: c.execute(sa.text("SHOW TimeZone")).scalar())


async def async_main():
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url(), pool_size=2, pool_pre_ping=True)
    async with engine.connect() as a:
        a = await a.execution_options(isolation_level="AUTOCOMMIT")
        async with engine.connect() as b:
            await a.run_sync(lambda sync_a: checks(sync_a, b.sync_connection))
    async with engine.connect() as c:
        await c.run_sync(lambda sync_c: check("pooled", lambda: pooled(sync_c)))
    async with engine.connect() as c, engine.connect() as d:
        await c.run_sync(lambda sync_c: executemany(sync_c, d.sync_connection))
    await engine.dispose()
    say("close", engine.pool.checkedout())
    other = create_async_engine(url())
    async with other.connect() as c:
        check("after close", (await c.execute(sa.text("SHOW TimeZone"))).scalar)
    await other.dispose()


if ARG == "asyncpg":
    asyncio.run(async_main())
else:
    sync_main()
