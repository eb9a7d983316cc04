"""The shell's history file keeps what was typed, but never a secret typed by mistake."""

from __future__ import annotations

from pathlib import Path

from kopilka.shell.history import history_at


def test_lines_with_a_token_or_a_password_are_not_written_to_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    history = history_at(home / "history")
    kept = ['deposit --client="John Jones" --amount=5 --description=rent', "help"]
    secret = [
        'balance --client="John Jones" --token=kpk_SECRET123',
        "accounts --db postgresql://bob:hunter2@db.example/ledger",
        "accounts --url http://alice:pa55w0rd@bank.example:8888",
        "balance --client=kop_0123456789abcdef_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh",
    ]
    for line in kept[:1] + secret + kept[1:]:
        history.append_string(line)
    written = (home / "history").read_text()
    for line in kept:
        assert line in written
    for word in ("SECRET123", "hunter2", "pa55w0rd", "AbCdEfGh"):
        assert word not in written
    # Still recalled within the session, where the typist may mend the line.
    assert list(history.get_strings())[-2] == secret[-1]
