"""Tab completion in the real shell on a pseudo-terminal, for lines written as the
parser reads them: a space escaped with a backslash, a command named to `help`."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_shell_embedded import Terminal


def test_tab_completes_a_name_written_with_an_escaped_space(kopilka_home: Path) -> None:
    """`John\\ J` is what the parser reads as `John J`: Tab completed nothing there,
    and after `John\\ ` it started a new word of options."""
    terminal = Terminal(kopilka_home, "shell", "--sandbox")
    try:
        terminal.expect("'exit' or Ctrl-D to leave.")
        terminal.send('deposit --client="John Jones" --amount=5 --description=x\r')
        terminal.expect("Deposit operation was successful!")
        terminal.expect(">")
        terminal.send("balance --client=John\\ J\t\r")
        terminal.expect("Balance of John Jones: $5.00")
        terminal.expect(">")
        terminal.send("withdraw --client=John\\ \t --amount=1 --description=y\r")
        terminal.expect("Withdrawal operation was successful!")
        terminal.expect(">")
        terminal.send("help with\t\r")  # the command after `help` completes too
        terminal.expect("Usage: withdraw --client=NAME")
        terminal.expect(">")
        terminal.send("\x04")
        terminal.rest()
    finally:
        status = terminal.close()
    assert status == 0, terminal.seen
