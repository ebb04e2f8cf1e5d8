"""proxy_drivers.rs with pg8000: `a` through its native API (autocommit, named parameters),
`b` through its DB-API (a transaction begun by the first statement). pg8000 prepares every
statement under a name of its own (the same names in every connection) and keeps it."""

import pg8000.dbapi
import pg8000.native

from driverlib import ARRAY, BYTES, MOMENT, NUMBER, TARGET, check, expect_error, say

PARAMETERS = ("server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
              "integer_datetimes", "standard_conforming_strings", "server_version")


def where():
    """The connection arguments: a Unix socket (directly) or a host and port."""
    args = {"user": TARGET["user"], "password": TARGET["password"],
            "database": TARGET["database"]}
    if TARGET["host"].startswith("/"):
        args["unix_sock"] = f"{TARGET['host']}/.s.PGSQL.{TARGET['port']}"
    else:
        args.update(host=TARGET["host"], port=TARGET["port"])
    return args


def state(e):
    fields = e.args[0]
    return f"{fields['C']} {fields['M']}"


def in_b(sql, args=()):
    cur = b.cursor()
    cur.execute(sql, args)
    row = cur.fetchone()
    b.commit()
    return row


a = pg8000.native.Connection(**where())
b = pg8000.dbapi.connect(**where())
say("connect", " | ".join(f"{p}={a.parameter_statuses.get(p)}" for p in PARAMETERS))
check("cleanup", lambda: (a.run("DELETE FROM items"), "done")[1])
check("simple", lambda: a.run("SELECT 1, 'two'"))
check("params", lambda: a.run(
    "SELECT :i::int + 1, :t::text || '!', :ts::timestamptz + interval '1 hour', :n::numeric * 2, "
    ":y::bytea, :z::int IS NULL, :arr::int[] || 4",
    i=41, t="héllo", ts=MOMENT, n=NUMBER, y=BYTES, z=None, arr=ARRAY))
check("cached", lambda: [a.run("SELECT :i::int * 10", i=i)[0][0] for i in range(7)])


def commit():
    a.run("START TRANSACTION")
    a.run("INSERT INTO items VALUES (:x), (:y)", x=1, y=2)
    a.run("COMMIT")
    return f"{in_b('SELECT count(*) FROM items')[0]} rows seen by the other"


def rollback():
    a.run("START TRANSACTION")
    a.run("INSERT INTO items VALUES (3)")
    inside = a.run("SELECT count(*) FROM items")[0][0]
    a.run("ROLLBACK")
    after = a.run("SELECT count(*) FROM items")[0][0]
    return f"{inside} inside, {after} after, {in_b('SELECT count(*) FROM items')[0]} seen by the other"


check("commit", commit)
check("rollback", rollback)
check("error", lambda: expect_error(lambda: a.run("SELECT 1 / :z", z=0), state))
check("after error", lambda: a.run("SELECT 2")[0][0])


def failed_transaction():
    cur = b.cursor()
    first = expect_error(lambda: cur.execute("SELECT 1 / 0"), state)
    following = expect_error(lambda: cur.execute("SELECT 1"), state)
    b.rollback()
    return f"{first} | {following} | then {in_b('SELECT 4')[0]}"


check("error in transaction", failed_transaction)
check("set timezone", lambda: a.run("SET TIME ZONE 'Asia/Tokyo'") or "ok")
check("timezone", lambda: a.run("SHOW TimeZone")[0][0])
check("timezone status", lambda: a.parameter_statuses.get("TimeZone"))


def rendered(c):
    sql = "SELECT %s::timestamptz::text, %s::timestamptz"
    if c is a:
        row = a.run(sql.replace("%s", ":m"), m=MOMENT)[0]
    else:
        row = in_b(sql, (MOMENT, MOMENT))
    return f"{row[0]} {row[1].isoformat()}"


check("timezone rendered", lambda: rendered(a))
for i in (1, 2, 3):
    if i == 2:
        check("b sets", lambda: [b.cursor().execute("SET TIME ZONE 'America/New_York'"),
                                 b.commit(), "ok"][2])
    check(f"interleave {i}", lambda: f"a={a.run('SHOW TimeZone')[0][0]} b={in_b('SHOW TimeZone')[0]}")
check("interleave statements", lambda: [
    v for i in range(5)
    for v in (a.run("SELECT :i::int + 100", i=i)[0][0], in_b("SELECT %s::int - 100", (i,))[0])])


def prepared():
    # The native API's explicit prepared statements, each kept and run in turns.
    pa = a.prepare("SELECT :t::text || 'a'")
    seen = [v for i in range(3) for v in (pa.run(t=str(i))[0][0], in_b("SELECT %s * 3", (i,))[0])]
    pa.close()
    return seen


check("interleave prepared", prepared)
check("interleave rendered a", lambda: rendered(a))
check("interleave rendered b", lambda: rendered(b))
check("interleave status", lambda: f"a={a.parameter_statuses.get('TimeZone')} "
      f"b={b.parameter_statuses.get('TimeZone')}")
a.close()
b.close()
say("close", "ok")
c = pg8000.native.Connection(**where())
check("after close", lambda: c.run("SHOW TimeZone")[0][0])
c.close()
