"""Which of a batch's commands hold text the database cannot store.

A database in another encoding than UTF8 lacks most characters (and none stores a NUL),
and PostgreSQL says so for the statement, not for the row that holds it. The batch's
texts are sent again by halves, to find the commands that hold such text: those alone
are refused, as bad input is, and the rest are applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields, replace

from kopilka.domain.model import ClaimKey, Command, Outcome
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


def without(commands: Sequence[Command], outcomes: dict[int, Outcome]) -> list[Command]:
    """The commands but those whose `outcomes` are known (the refused), each claim
    covering the ones it covered that are left: else it would cover the next request's
    commands. A claim whose every command is refused is let go unwritten, its own
    outcome (added to `outcomes`), as one under which nothing took effect is: its key
    stays free, and its request is answered by its commands' refusals."""
    kept: list[Command] = []
    for index, command in enumerate(commands):
        if index in outcomes:
            continue
        if isinstance(command, ClaimKey) and command.covers:
            covered = range(index + 1, index + 1 + command.covers)
            gone = sum(1 for place in covered if place in outcomes)
            if gone == command.covers:
                outcomes[index] = command
                continue
            command = replace(command, covers=command.covers - gone)
        kept.append(command)
    return kept


def _texts(command: Command) -> list[str]:
    """Every text a command writes: names, a description, a key, a ledger."""
    values = (getattr(command, field.name) for field in fields(command))
    return [value for value in values if isinstance(value, str)]
