"""proxy_drivers.rs with psycopg2: `a` in autocommit, `b` as psycopg2 opens it, its
transactions in `with b:` blocks (committed at the end, rolled back on an error). psycopg2
binds parameters itself and prepares nothing: its `cached` check runs one statement again."""

import io

import psycopg2
import psycopg2.extensions

from driverlib import ARRAY, BYTES, MOMENT, NUMBER, TARGET, check, expect_error, say

PARAMETERS = ("server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
              "integer_datetimes", "standard_conforming_strings", "server_version")


def state(e):
    return f"{e.pgcode} {e.diag.message_primary}"


def one(c, sql, args=None):
    with c.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()


def run(c, sql, args=None):
    with c.cursor() as cur:
        cur.execute(sql, args)
        return cur.statusmessage


def in_b(sql, args=None):
    """One statement in a transaction of b's own."""
    with b:
        return one(b, sql, args)


a = psycopg2.connect(TARGET["url"])
a.autocommit = True
b = psycopg2.connect(TARGET["url"])
say("connect", " | ".join(f"{p}={a.get_parameter_status(p)}" for p in PARAMETERS))
check("cleanup", lambda: run(a, "DELETE FROM items") and "done")
check("simple", lambda: one(a, "SELECT 1, 'two'"))


def params():
    row = one(a, "SELECT %s::int + 1, %s::text || '!', %s::timestamptz + interval '1 hour', "
              "%s::numeric * 2, %s::bytea, %s::int IS NULL, %s::int[] || 4",
              (41, "héllo", MOMENT, NUMBER, psycopg2.Binary(BYTES), None, ARRAY))
    return (*row[:4], bytes(row[4]), *row[5:])


check("params", params)
check("cached", lambda: [one(a, "SELECT %s::int * 10", (i,))[0] for i in range(7)])


def commit():
    a.autocommit = False
    with a:
        run(a, "INSERT INTO items VALUES (%s), (%s)", (1, 2))
    a.autocommit = True
    return f"{in_b('SELECT count(*) FROM items')[0]} rows seen by the other"


def rollback():
    a.autocommit = False
    run(a, "INSERT INTO items VALUES (3)")
    inside = one(a, "SELECT count(*) FROM items")[0]
    a.rollback()
    a.autocommit = True
    after = one(a, "SELECT count(*) FROM items")[0]
    return f"{inside} inside, {after} after, {in_b('SELECT count(*) FROM items')[0]} seen by the other"




def copy():
    with a.cursor() as cur:
        cur.copy_expert("COPY items (id) FROM STDIN", io.StringIO("4\n5\n"))
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT id FROM items ORDER BY id) TO STDOUT", out)
    return out.getvalue().split()


check("commit", commit)
check("rollback", rollback)
check("copy", copy)
check("error", lambda: expect_error(lambda: one(a, "SELECT 1 / %s", (0,)), state))
check("after error", lambda: one(a, "SELECT 2")[0])


def failed_transaction():
    first = expect_error(lambda: one(b, "SELECT 1 / 0"), state)
    status = b.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INERROR
    following = expect_error(lambda: one(b, "SELECT 1"), state)
    b.rollback()
    return f"{first} | in error {status} | {following} | then {in_b('SELECT 4')[0]}"


check("error in transaction", failed_transaction)
check("set timezone", lambda: run(a, "SET TIME ZONE 'Asia/Tokyo'"))
check("timezone", lambda: one(a, "SHOW TimeZone")[0])
check("timezone status", lambda: a.get_parameter_status("TimeZone"))


def rendered(c):
    sql = "SELECT %s::timestamptz::text, %s::timestamptz"
    row = one(c, sql, (MOMENT, MOMENT)) if c.autocommit else in_b(sql, (MOMENT, MOMENT))
    return f"{row[0]} {row[1].isoformat()}"


check("timezone rendered", lambda: rendered(a))
for i in (1, 2, 3):
    if i == 2:
        check("b sets", lambda: [run(b, "SET TIME ZONE 'America/New_York'"), b.commit()][0])
    check(f"interleave {i}", lambda: f"a={one(a, 'SHOW TimeZone')[0]} b={in_b('SHOW TimeZone')[0]}")
check("interleave statements", lambda: [
    v for i in range(5)
    for v in (one(a, "SELECT %s::int + 100", (i,))[0], in_b("SELECT %s::int - 100", (i,))[0])])
check("interleave rendered a", lambda: rendered(a))
check("interleave rendered b", lambda: rendered(b))
check("interleave status", lambda: f"a={a.get_parameter_status('TimeZone')} "
      f"b={b.get_parameter_status('TimeZone')}")
a.close()
b.close()
say("close", f"{a.closed} {b.closed}")
c = psycopg2.connect(TARGET["url"])
check("after close", lambda: one(c, "SHOW TimeZone")[0])
c.close()
