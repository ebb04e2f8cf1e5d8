"""What the Python driver checks of proxy_drivers.rs share: the target they are given (JSON in
the first argument) and the printing of one line per check, `name: value`, or `name: FAILED ...`
when a check met an error it did not expect (the direct run must never print one)."""

import datetime
import decimal
import json
import sys

TARGET = json.loads(sys.argv[1])
ARG = sys.argv[2] if len(sys.argv) > 2 else ""

# The values every driver sends as parameters.
MOMENT = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
NUMBER = decimal.Decimal("12.345")
BYTES = b"\x00\x01\xff"
ARRAY = [1, 2, 3]


def say(name, value):
    print(f"{name}: {value}", flush=True)


def check(name, fn):
    """Runs `fn` and prints its value, or the error it raised."""
    try:
        say(name, fn())
    except Exception as e:  # noqa: BLE001 - every failure is printed, and compared
        say(name, f"FAILED {type(e).__name__}: {e}".replace("\n", " "))


async def acheck(name, fn):
    """`check` for a coroutine function."""
    try:
        say(name, await fn())
    except Exception as e:  # noqa: BLE001
        say(name, f"FAILED {type(e).__name__}: {e}".replace("\n", " "))


def expect_error(fn, state_of):
    """Runs `fn`, which must fail; returns `state_of(error)` (its SQLSTATE and message)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return state_of(e)
    return "no error"


async def aexpect_error(fn, state_of):
    try:
        await fn()
    except Exception as e:  # noqa: BLE001
        return state_of(e)
    return "no error"
