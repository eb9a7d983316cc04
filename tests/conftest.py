"""Fixtures shared by every test directory: a real PostgreSQL server on demand."""

import signal

pytest_plugins = ["tests.conftest_pg"]

# Started as a background job (`cmd &` in a script), the tests inherit SIGINT ignored,
# and so would every kopilka they start, which the Ctrl-C tests then cannot interrupt.
# A handler of this process's own is not inherited: each child starts with the default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
