"""Keyed requests, retried at random, apply once: the first body to take effect under a
key is the one that stands.

Hypothesis draws requests from a few keys and a few bodies (lists of deposits, some of
which a cap refuses, or that name an unknown client), sends each with a ClaimKey for
its key and body, alone or concurrently, through an Engine on a real SQLite file, a
real PostgreSQL database and the memory store, as the batch API does (and through two
engines on one database, as two workers, on SQLite and PostgreSQL). A reference
model predicts every answer. On PostgreSQL a claimed batch on known accounts is written
in one statement with its claim, and a retry's claim sends it the way that locks.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.pgserver import PostgresTestServer

from kopilka.domain.model import ClaimKey, Deposit, Operation, SetLimits
from kopilka.engine import Engine
from kopilka.errors import KopilkaError
from kopilka.store import open_store

CAP_CENTS = 1_000
KEYS = ("k0", "k1", "k2")

# A body: deposits by (client, amount). "Ann" has a cap; "Nobody" has no account.
bodies = st.lists(
    st.tuples(st.sampled_from(("Ann", "Bob", "Nobody")), st.integers(1, 600)),
    min_size=0,
    max_size=3,
).map(tuple)
requests = st.lists(
    st.tuples(st.sampled_from(KEYS), st.integers(0, 2)),  # (key, which body)
    min_size=1,
    max_size=12,
)
rounds = st.lists(st.tuples(requests, st.booleans()), min_size=1, max_size=4)


def deposits(key: str, body: tuple[tuple[str, int], ...]) -> list[Deposit]:
    return [
        Deposit(client, amount, "pay", f"{key}:{index}", open_account=False)
        for index, (client, amount) in enumerate(body)
    ]


class Model:
    """What the ledger must answer: per key, the body that took effect and its codes."""

    def __init__(self) -> None:
        self.balances = {"Ann": 0, "Bob": 0}
        self.standing: dict[str, tuple[tuple[tuple[str, int], ...], list[str]]] = {}

    def answer(self, key: str, body: tuple[tuple[str, int], ...]) -> list[str] | str:
        if key in self.standing:
            first, codes = self.standing[key]
            return codes if body == first else "idempotency_key_reused"
        codes = []
        for client, amount in body:
            if client not in self.balances:
                codes.append("account_not_found")
            elif client == "Ann" and self.balances[client] + amount > CAP_CENTS:
                codes.append("cap_exceeded")
            else:
                self.balances[client] += amount
                codes.append("ok")
        # Refusals are kept under their keys too: only an empty body leaves the key free.
        if body:
            self.standing[key] = (body, codes)
        return codes


def code(outcome: object) -> str:
    if isinstance(outcome, KopilkaError):
        return outcome.code
    assert isinstance(outcome, Operation)
    return "ok"


async def scenario(
    url: str,
    drawn_bodies: list[tuple[tuple[str, int], ...]],
    drawn: list[tuple[list[tuple[str, int]], bool]],
    engine_count: int = 1,
) -> None:
    """With more than one engine on the ledger (each with its own connection, as a
    worker process has), requests sent in turn go to each in turn: one finds the keys
    another claimed. Those sent at once go to one engine, whose order the model reads."""
    engines: list[Engine] = []
    try:
        for _ in range(engine_count):
            engines.append(Engine(open_store(url)))
            await engines[-1].start()
        engine = engines[0]
        for client in ("Ann", "Bob"):
            assert isinstance(
                await engine.execute(Deposit(client, 1, "open", f"open-{client}")), Operation
            )
        await engine.execute(SetLimits("Ann", max_balance_cents=CAP_CENTS + 1))
        model = Model()

        async def send(
            engine: Engine, key: str, body: tuple[tuple[str, int], ...]
        ) -> list[str] | str:
            claim = ClaimKey("main", key, repr(body))
            try:
                outcomes = await engine.submit_many(deposits(key, body), claim)
            except KopilkaError as error:
                return error.code
            return [code(outcome) for outcome in outcomes]

        for round_number, (sent, concurrently) in enumerate(drawn):
            chosen = [(key, drawn_bodies[which % len(drawn_bodies)]) for key, which in sent]
            if concurrently:
                # The engine takes them in order: the model may read them in order too.
                engine = engines[round_number % len(engines)]
                answers = await asyncio.gather(*(send(engine, key, body) for key, body in chosen))
            else:
                answers = [
                    await send(engines[turn % len(engines)], key, body)
                    for turn, (key, body) in enumerate(chosen)
                ]
            for (key, body), answer in zip(chosen, answers, strict=True):
                assert answer == model.answer(key, body), (key, body)
        for client, cents in model.balances.items():
            for engine in engines:
                account = await engine.get_account("main", client)
                assert account.balance_cents == cents + 1
    finally:
        for engine in engines:
            await engine.close()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "sqlite_two_engines"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn_bodies=st.lists(bodies, min_size=1, max_size=3), drawn=rounds)
def test_a_key_stands_for_the_first_body_that_took_effect(
    kind: str,
    drawn_bodies: list[tuple[tuple[str, int], ...]],
    drawn: list[tuple[list[tuple[str, int]], bool]],
) -> None:
    if kind == "memory":
        asyncio.run(scenario("memory:", drawn_bodies, drawn))
        return
    engine_count = 2 if kind == "sqlite_two_engines" else 1
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "kopilka.db")
        asyncio.run(scenario(path, drawn_bodies, drawn, engine_count))


@pytest.mark.postgres
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn_bodies=st.lists(bodies, min_size=1, max_size=3), drawn=rounds)
def test_a_key_stands_for_the_first_body_that_took_effect_on_postgres_through_two_engines(
    postgres_server: PostgresTestServer,
    drawn_bodies: list[tuple[tuple[str, int], ...]],
    drawn: list[tuple[list[tuple[str, int]], bool]],
) -> None:
    postgres_server.start()  # a test before may have stopped the shared server
    url = postgres_server.create_database()  # one per example: the keys start free
    try:
        asyncio.run(scenario(url, drawn_bodies, drawn, engine_count=2))
    finally:
        postgres_server.drop_database(url.rsplit("/", 1)[1].split("?", 1)[0])
