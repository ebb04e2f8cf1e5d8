"""proxy_drivers.rs with psycopg 3: `a` in autocommit with transaction blocks, `b` as psycopg
opens it (a transaction begun by the first statement, ended by commit or rollback)."""

import psycopg

from driverlib import ARRAY, BYTES, MOMENT, NUMBER, TARGET, check, expect_error, say

PARAMETERS = ("server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
              "integer_datetimes", "standard_conforming_strings", "server_version")


def state(e):
    return f"{e.sqlstate} {e.diag.message_primary}"


a = psycopg.connect(TARGET["url"], autocommit=True)
b = psycopg.connect(TARGET["url"])
say("connect", " | ".join(f"{p}={a.info.parameter_status(p)}" for p in PARAMETERS))
check("cleanup", lambda: a.execute("DELETE FROM items") and "done")
check("simple", lambda: a.execute("SELECT 1, 'two'").fetchone())
check("params", lambda: a.execute(
    "SELECT %s::int + 1, %s::text || '!', %s::timestamptz + interval '1 hour', %s::numeric * 2, "
    "%s::bytea, %s::int IS NULL, %s::int[] || 4",
    (41, "héllo", MOMENT, NUMBER, BYTES, None, ARRAY)).fetchone())
# psycopg prepares a statement on its fifth run (prepare_threshold).
check("cached", lambda: [a.execute("SELECT %s::int * 10", (i,)).fetchone()[0] for i in range(7)])


def commit():
    with a.transaction():
        a.execute("INSERT INTO items VALUES (%s), (%s)", (1, 2))
    seen = b.execute("SELECT count(*) FROM items").fetchone()[0]
    b.commit()
    return f"{seen} rows seen by the other"


def rollback():
    with a.transaction() as tx:
        a.execute("INSERT INTO items VALUES (3)")
        inside = a.execute("SELECT count(*) FROM items").fetchone()[0]
        raise psycopg.Rollback(tx)
    after = a.execute("SELECT count(*) FROM items").fetchone()[0]
    seen = b.execute("SELECT count(*) FROM items").fetchone()[0]
    b.commit()
    return f"{inside} inside, {after} after, {seen} seen by the other"




def copy():
    with a.cursor() as cur:
        with cur.copy("COPY items (id) FROM STDIN") as c:
            for i in (4, 5):
                c.write_row((i,))
        loaded = cur.rowcount
        with cur.copy("COPY (SELECT id FROM items ORDER BY id) TO STDOUT") as c:
            out = [row for row in c.rows()]
    return f"{loaded} in, out: {out}"


check("commit", commit)
check("rollback", rollback)
check("copy", copy)
check("error", lambda: expect_error(lambda: a.execute("SELECT 1 / %s", (0,)), state))
check("after error", lambda: a.execute("SELECT 2").fetchone()[0])


def failed_transaction():
    first = expect_error(lambda: b.execute("SELECT 1 / 0"), state)
    following = expect_error(lambda: b.execute("SELECT 1"), state)
    b.rollback()
    then = b.execute("SELECT 4").fetchone()[0]
    b.commit()
    return f"{first} | {following} | then {then}"


check("error in transaction", failed_transaction)
check("set timezone", lambda: a.execute("SET TIME ZONE 'Asia/Tokyo'").statusmessage)
check("timezone", lambda: a.execute("SHOW TimeZone").fetchone()[0])
check("timezone status", lambda: f"{a.info.parameter_status('TimeZone')} {a.info.timezone}")


def rendered(c):
    row = c.execute("SELECT %s::timestamptz::text, %s::timestamptz", (MOMENT, MOMENT)).fetchone()
    if not c.autocommit:
        c.commit()
    return f"{row[0]} {row[1].isoformat()} {row[1].tzinfo}"


check("timezone rendered", lambda: rendered(a))


def zone(c):
    z = c.execute("SHOW TimeZone").fetchone()[0]
    if not c.autocommit:
        c.commit()
    return z


for i in (1, 2, 3):
    if i == 2:
        def set_b():
            b.execute("SET TIME ZONE 'America/New_York'")
            b.commit()
            return "ok"
        check("b sets", set_b)
    check(f"interleave {i}", lambda: f"a={zone(a)} b={zone(b)}")


def statements():
    # Both clients' statements get prepared, under the same names (_pg3_0, ...) in each.
    seen = []
    for i in range(7):
        seen.append(a.execute("SELECT %s::int + 100", (i,)).fetchone()[0])
        seen.append(b.execute("SELECT %s::int - 100", (i,)).fetchone()[0])
        b.commit()
    return seen


check("interleave statements", statements)
check("interleave rendered a", lambda: rendered(a))
check("interleave rendered b", lambda: rendered(b))
check("interleave status", lambda: f"a={a.info.timezone} b={b.info.timezone}")


def pipeline():
    # executemany runs in a pipeline (Sync, then a Flush); `d` then needs the connection.
    with psycopg.connect(TARGET["url"], autocommit=True) as c, \
            psycopg.connect(TARGET["url"], autocommit=True) as d:
        c.cursor().executemany("INSERT INTO items VALUES (%s)", [(7,), (8,)])
        seen = d.execute("SELECT count(*) FROM items WHERE id > 6").fetchone()[0]
        return f"{seen} rows seen by the other"


check("pipeline", pipeline)
a.close()
b.close()
say("close", f"{a.closed} {b.closed}")
with psycopg.connect(TARGET["url"]) as c:
    check("after close", lambda: c.execute("SHOW TimeZone").fetchone()[0])
