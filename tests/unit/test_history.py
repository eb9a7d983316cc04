"""The shell's history file keeps what was typed, but never a secret typed by mistake."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from prompt_toolkit.history import History
from tests.small_disk import fill, small_disk

from kopilka.shell.history import BYTES_KEPT, ENTRIES_KEPT, history_at


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
        # A password with a space in it, as the shell reads the word: quoted, escaped.
        'balance --client=x --db "postgresql://u:p w@h/db"',
        "balance --client=x --db 'postgres://u:p w@h/db'",
        'balance --client=x --url="http://u:p w@h/"',
        "balance --client=x --url=http://u:pw\\ x@h/",
        'balance --client=x --db "postgresql://u:p w@h/db',  # its quote left open
    ]
    for line in kept[:1] + secret + kept[1:]:
        history.append_string(line)
    written = (home / "history").read_text()
    for line in kept:
        assert line in written
    for word in ("SECRET123", "hunter2", "pa55w0rd", "AbCdEfGh", "p w", "pw\\ x"):
        assert word not in written
    # Still recalled within the session, where the typist may mend the line.
    assert list(history.get_strings())[-2] == secret[-1]


def _write_entries(path: Path, count: int, description: str = "pay") -> None:
    """Entries as prompt_toolkit's FileHistory writes them: a time, then "+" lines."""
    with path.open("w") as history:
        for number in range(count):
            history.write(f"\n# 2026-12-05 18:00:00.{number:06d}\n")
            history.write(
                f'+deposit --client="Client {number}" --amount=100 --description={description}\n'
            )


def _private_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return home


def test_a_history_readable_by_others_is_made_private_again(tmp_path: Path) -> None:
    """As the database and the admin token are: it holds every name and amount typed."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "history").write_text("\n# 2026-12-06 01:00:00.000000\n+balance --client=Ann\n")
    (home / "history").chmod(0o644)
    history = history_at(home / "history")
    assert (home / "history").stat().st_mode & 0o777 == 0o600
    assert list(history.load_history_strings()) == ["balance --client=Ann"]


def test_a_history_linked_to_what_is_no_file_is_left_as_it_is(tmp_path: Path) -> None:
    """History turned off by a link to /dev/null: made "private", /dev/null was closed to
    every other process of the machine (as root)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o666)
    fifo.chmod(0o666)
    (home / "history").symlink_to(fifo)
    history_at(home / "history")
    assert fifo.stat().st_mode & 0o777 == 0o666


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


def test_a_history_of_long_lines_is_cut_to_its_size_and_then_left(tmp_path: Path) -> None:
    """Cut to 10,000 entries alone, a history of long lines (transfers with long
    descriptions) stayed over the size that cuts it, and was rewritten at every start."""
    home = _private_home(tmp_path)
    _write_entries(home / "history", 12_000, description="x" * 300)
    assert len(list(history_at(home / "history").load_history_strings())) < ENTRIES_KEPT
    assert (home / "history").stat().st_size <= BYTES_KEPT
    before = (home / "history").stat().st_ino
    history_at(home / "history")
    assert (home / "history").stat().st_ino == before  # not written again


def test_a_history_reached_through_a_link_is_cut_where_the_link_leads(tmp_path: Path) -> None:
    home = _private_home(tmp_path)
    kept_elsewhere = tmp_path / "elsewhere"
    kept_elsewhere.mkdir(mode=0o700)
    _write_entries(kept_elsewhere / "history", 30_000)
    (home / "history").symlink_to(kept_elsewhere / "history")
    history = history_at(home / "history")
    assert (home / "history").is_symlink()  # the link kept: lines still go where it leads
    history.append_string("help")
    assert (kept_elsewhere / "history").read_text().endswith("\n+help\n")
    assert len(list(history.load_history_strings())) == ENTRIES_KEPT + 1


def _start_a_shell(home: Path, start: threading.Barrier, histories: list[History]) -> None:
    start.wait()
    histories.append(history_at(home / "history"))


def test_two_shells_starting_at_once_both_keep_their_history(tmp_path: Path) -> None:
    """Both cut to one temporary file of a fixed name: the second found it gone, and its
    session had no history at all, neither recalled nor kept."""
    home = _private_home(tmp_path)
    for _ in range(5):
        _write_entries(home / "history", 30_000)
        start = threading.Barrier(2)
        histories: list[History] = []
        shells = [
            threading.Thread(target=_start_a_shell, args=(home, start, histories)) for _ in range(2)
        ]
        for thread in shells:
            thread.start()
        for thread in shells:
            thread.join()
        assert [type(h).__name__ for h in histories] == ["_FileHistoryOrNone"] * 2
        assert sorted(path.name for path in home.iterdir()) == ["history"]


def test_a_history_that_cannot_be_cut_is_read_whole(tmp_path: Path) -> None:
    """On a full disk the cut failed, and the session went without history (and left
    its unfinished copy behind, at every start)."""
    with small_disk(tmp_path / "home", size="4m") as home:
        _write_entries(home / "history", 30_000)
        fill(home)
        history = history_at(home / "history")
        assert len(list(history.load_history_strings())) == 30_000
        assert sorted(path.name for path in home.iterdir()) == ["filler", "history"]


def test_one_line_longer_than_what_is_kept_goes_alone(tmp_path: Path) -> None:
    """A last line of over 1 MB (a paste gone wrong) filled the cut's whole room by
    itself: it was dropped, and every line before it with it."""
    home = _private_home(tmp_path)
    _write_entries(home / "history", 30_000)
    with (home / "history").open("a") as history:
        history.write(f"\n# 2026-12-05 19:00:00.000000\n+{'x' * (BYTES_KEPT + 1)}\n")
    recalled = list(history_at(home / "history").load_history_strings())
    assert len(recalled) == ENTRIES_KEPT - 1  # of the last 10,000, all but that one
    assert recalled[0] == 'deposit --client="Client 29999" --amount=100 --description=pay'


def test_a_home_whose_parent_is_missing_is_not_made_for_the_history(tmp_path: Path) -> None:
    """A mistyped KOPILKA_HOME (a remote shell's, which opens no ledger there): only its
    last directory is ever made, and the history is kept for the session alone."""
    mistyped = tmp_path / "nope" / "deep" / "home"
    history = history_at(mistyped / "history")
    history.append_string("help")
    assert list(history.get_strings()) == ["help"]
    assert not (tmp_path / "nope").exists()
    history_at(tmp_path / "home" / "history").append_string("help")
    assert (tmp_path / "home" / "history").read_text().endswith("+help\n")
