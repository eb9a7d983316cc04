"""The shell's history file keeps what was typed, but never a secret typed by mistake."""

from __future__ import annotations

from pathlib import Path

from kopilka.shell.history import ENTRIES_KEPT, history_at


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


def _write_entries(path: Path, count: int) -> None:
    """Entries as prompt_toolkit's FileHistory writes them: a time, then "+" lines."""
    with path.open("w") as history:
        for number in range(count):
            history.write(f"\n# 2026-12-05 18:00:00.{number:06d}\n")
            history.write(f'+deposit --client="Client {number}" --amount=100 --description=pay\n')


def test_a_long_history_keeps_its_last_lines_only(tmp_path: Path) -> None:
    """The file was only ever appended to, and read whole into memory at each start: a
    51 MB one (half a million lines) took 70 MB more and 30 s to load."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    _write_entries(home / "history", 30_000)
    history = history_at(home / "history")
    recalled = list(history.load_history_strings())  # newest first
    assert len(recalled) == ENTRIES_KEPT
    assert recalled[0] == 'deposit --client="Client 29999" --amount=100 --description=pay'
    assert recalled[-1] == (
        f'deposit --client="Client {30_000 - ENTRIES_KEPT}" --amount=100 --description=pay'
    )
    assert (home / "history").stat().st_mode & 0o777 == 0o600
    history.append_string("help")
    assert (home / "history").read_text().endswith("\n+help\n")
    assert sorted(path.name for path in home.iterdir()) == ["history"]


def test_a_short_history_is_left_as_it_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    _write_entries(home / "history", ENTRIES_KEPT + 10)  # more lines, but under the size
    before = (home / "history").read_bytes()
    assert len(list(history_at(home / "history").load_history_strings())) == ENTRIES_KEPT + 10
    assert (home / "history").read_bytes() == before
