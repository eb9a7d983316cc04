"""Which of a batch's commands hold text the database cannot store.

A database in another encoding than UTF8 lacks most characters (and none stores a NUL),
and PostgreSQL says so for the statement, not for the row that holds it. The batch's
texts are sent again by halves, to find the commands that hold such text: those alone
are refused, as bad input is, and the rest are applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields, replace

from kopilka.domain.model import ClaimKey, Command
from kopilka.errors import InvalidInput

# The refusal of a database for these texts, or None if it can store them all.
RefusalOfTexts = Callable[[list[str]], Awaitable[InvalidInput | None]]


async def unstorable_commands(
    commands: Sequence[Command], refusal_of: RefusalOfTexts
) -> dict[int, InvalidInput]:
    """The commands, by their place, whose text the database refuses, each with its
    refusal: a round trip for each half looked at, so a few among many cost a few dozen."""
    found: dict[int, InvalidInput] = {}

    async def look(start: int, end: int) -> None:
        refusal = await refusal_of([text for c in commands[start:end] for text in _texts(c)])
        if refusal is None:
            return
        if end - start == 1:
            found[start] = refusal
            return
        middle = (start + end) // 2
        await look(start, middle)
        await look(middle, end)

    if commands:
        await look(0, len(commands))
    return found


def without(commands: Sequence[Command], refused: dict[int, InvalidInput]) -> list[Command]:
    """The commands but those at the places `refused`, each claim covering the ones it
    covered that are left: else it would cover the next request's commands. A claim
    whose every command is refused is refused with them (added to `refused`), as the
    request is, before its key is looked at: the key stays free."""
    kept: list[Command] = []
    for index, command in enumerate(commands):
        if index in refused:
            continue
        if isinstance(command, ClaimKey) and command.covers:
            covered = range(index + 1, index + 1 + command.covers)
            gone = [place for place in covered if place in refused]
            if len(gone) == command.covers:
                refused[index] = refused[gone[0]]
                continue
            command = replace(command, covers=command.covers - len(gone))
        kept.append(command)
    return kept


def _texts(command: Command) -> list[str]:
    """Every text a command writes: names, a description, a key, a ledger."""
    values = (getattr(command, field.name) for field in fields(command))
    return [value for value in values if isinstance(value, str)]
