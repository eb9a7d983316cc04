# ruff: noqa: E501 - transcripts hold whole command lines and answers, exactly as typed
"""Shell sessions as data: the lines a person types and exactly what the shell answers.

A scenario is a transcript: lines starting with "> " (or a lone ">") are typed, the lines
after them are the expected answer. `YYYY-MM-DD HH:MM:SS` stands for any
time. Scenarios do not depend on how the shell reaches the bank, so the
embedded shell and the network shell run the same list. Each uses its own
client names and idempotency keys, so many can share one session and one
ledger (see `run_scenarios`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PROMPT = "> "
TIME_PLACEHOLDER = "YYYY-MM-DD HH:MM:SS"
_TIME_PATTERN = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
LONG_DESCRIPTION = "x" * 501
FULL_DESCRIPTION = "y" * 500

RunShell = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    transcript: str

    @property
    def typed(self) -> list[str]:
        return [line[len(PROMPT) :] for line in self._lines() if _is_typed(line)]

    @property
    def expected(self) -> list[str]:
        return [line for line in self._lines() if not _is_typed(line)]

    def _lines(self) -> list[str]:
        return self.transcript.strip("\n").splitlines()


def _is_typed(line: str) -> bool:
    return line.startswith(PROMPT) or line == PROMPT.strip()


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(re.escape(expected).replace(re.escape(TIME_PLACEHOLDER), _TIME_PATTERN))


def check(scenario: Scenario, output: Sequence[str]) -> None:
    """Every answer line exactly as in the transcript (times aside)."""
    expected = scenario.expected
    report = "\n".join([f"scenario {scenario.name!r}:", "expected:", *expected, "got:", *output])
    assert len(output) == len(expected), report
    for want, got in zip(expected, output, strict=True):
        assert _line_pattern(want).fullmatch(got), f"{report}\nfirst difference: {got!r}"


def run_scenario(run_shell: RunShell, scenario: Scenario) -> None:
    """One session for one scenario."""
    output = run_shell("\n".join(scenario.typed) + "\n")
    check(scenario, output.splitlines())


def _separator(scenario: Scenario) -> tuple[str, str]:
    """A line whose answer is known and unique: it marks where a scenario starts."""
    client = f"--- {scenario.name} ---"
    return f'balance --client="{client}"', f"Error: no account for client {client!r}"


def run_scenarios(run_shell: RunShell, scenarios: Sequence[Scenario]) -> dict[str, list[str]]:
    """All scenarios in ONE session (one process start); each one's answer lines by name."""
    typed: list[str] = []
    for scenario in scenarios:
        typed.append(_separator(scenario)[0])
        typed.extend(scenario.typed)
    lines = run_shell("\n".join(typed) + "\n").splitlines()
    outputs: dict[str, list[str]] = {}
    current: list[str] | None = None
    markers = {_separator(scenario)[1]: scenario.name for scenario in scenarios}
    for line in lines:
        if line in markers:
            current = outputs.setdefault(markers[line], [])
        else:
            assert current is not None, f"output before the first scenario: {line!r}"
            current.append(line)
    assert list(outputs) == [scenario.name for scenario in scenarios], list(outputs)
    return outputs


def _amount_refusals() -> str:
    refused = {
        "0": "amount must be greater than zero",
        "-5": "amount '-5' must be positive",
        "1.005": "amount '1.005' has more than two decimals",
        "1e3": "amount '1e3' is not a number like 100 or 1,000.25",
        "NaN": "amount 'NaN' is not a number like 100 or 1,000.25",
        "inf": "amount 'inf' is not a number like 100 or 1,000.25",
        "abc": "amount 'abc' is not a number like 100 or 1,000.25",
        "": "amount is empty",
        "$": "amount '$' is not a number like 100 or 1,000.25",
        ".505": "amount '.505' is not a number like 100 or 1,000.25",
        "1,000,000,000,000.01": "amount '1,000,000,000,000.01' is above the maximum "
        "$1,000,000,000,000.00",
    }
    lines = [
        f'> deposit --client="Amos Bad" --amount="{text}" --description=x\nError: {message}'
        for text, message in refused.items()
    ]
    lines.append("> balance --client=\"Amos Bad\"\nError: no account for client 'Amos Bad'")
    return "\n".join(lines)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "sample session",
        """
> deposit --client="John Jones" --amount=100 --description="ATM Deposit"
Deposit operation was successful!
> withdraw --client="John Jones" --amount=100 --description="ATM Withdrawal"
Withdrawal operation was successful!
> show_bank_statement --client="John Jones" --since="2021-01-01 00:00:00" --till="2031-01-01 00:00:00"
| Date                | Description      | Withdrawals | Deposits | Balance |
|---------------------|------------------|-------------|----------|---------|
|                     | Previous balance |             |          |   $0.00 |
| YYYY-MM-DD HH:MM:SS | ATM Deposit      |             |  $100.00 | $100.00 |
| YYYY-MM-DD HH:MM:SS | ATM Withdrawal   |     $100.00 |          |   $0.00 |
|                     | Totals           |     $100.00 |  $100.00 |   $0.00 |
""",
    ),
    Scenario("refused amounts change nothing", _amount_refusals()),
    Scenario(
        "accepted amount forms",
        """
> deposit --client="Ada Forms" --amount=100 --description=a
Deposit operation was successful!
> deposit --client="Ada Forms" --amount=100.5 --description=b
Deposit operation was successful!
> deposit --client="Ada Forms" --amount=100.50 --description=c
Deposit operation was successful!
> deposit --client="Ada Forms" --amount="1,000.25" --description=d
Deposit operation was successful!
> deposit --client="Ada Forms" --amount=1_000 --description=e
Deposit operation was successful!
> balance --client="Ada Forms"
Balance of Ada Forms: $2,301.25
""",
    ),
    Scenario(
        "option forms, quotes, comments and unicode",
        """
> deposit --client 'Ёжик Иванов' --amount 5 --description 'он сказал "да"'
Deposit operation was successful!
> # a comment line gets no answer, nor does the blank line below
>
> withdraw --client="Ёжик Иванов" --amount=1.25 --description=кофе
Withdrawal operation was successful!
> statement --client='Ёжик Иванов'
| Date                | Description      | Withdrawals | Deposits | Balance |
|---------------------|------------------|-------------|----------|---------|
|                     | Previous balance |             |          |   $0.00 |
| YYYY-MM-DD HH:MM:SS | он сказал "да"   |             |    $5.00 |   $5.00 |
| YYYY-MM-DD HH:MM:SS | кофе             |       $1.25 |          |   $3.75 |
|                     | Totals           |       $1.25 |    $5.00 |   $3.75 |
""",
    ),
    Scenario(
        "transfers show in both statements",
        """
> deposit --client="Tom Payer" --amount=500 --description=salary
Deposit operation was successful!
> open_account --client="Tess Payee"
Account opened for Tess Payee: floor $0.00, cap none.
> transfer --from="Tom Payer" --to="Tess Payee" --amount=120.50 --description=rent
Transfer operation was successful!
> transfer -f "Tess Payee" -t "Tom Payer" 20 -d refund
Transfer operation was successful!
> statement --client="Tom Payer"
| Date                | Description                      | Withdrawals | Deposits | Balance |
|---------------------|----------------------------------|-------------|----------|---------|
|                     | Previous balance                 |             |          |   $0.00 |
| YYYY-MM-DD HH:MM:SS | salary                           |             |  $500.00 | $500.00 |
| YYYY-MM-DD HH:MM:SS | Transfer to Tess Payee: rent     |     $120.50 |          | $379.50 |
| YYYY-MM-DD HH:MM:SS | Transfer from Tess Payee: refund |             |   $20.00 | $399.50 |
|                     | Totals                           |     $120.50 |  $520.00 | $399.50 |
> show_bank_statement --client="Tess Payee"
| Date                | Description                   | Withdrawals | Deposits | Balance |
|---------------------|-------------------------------|-------------|----------|---------|
|                     | Previous balance              |             |          |   $0.00 |
| YYYY-MM-DD HH:MM:SS | Transfer from Tom Payer: rent |             |  $120.50 | $120.50 |
| YYYY-MM-DD HH:MM:SS | Transfer to Tom Payer: refund |      $20.00 |          | $100.50 |
|                     | Totals                        |      $20.00 |  $120.50 | $100.50 |
""",
    ),
    Scenario(
        "transfer to self and empty names",
        """
> deposit --client="Sam Self" --amount=10 --description=x
Deposit operation was successful!
> transfer --from="Sam Self" --to="Sam Self" --amount=1
Error: cannot transfer from a client to the same client
> deposit --client="" --amount=1 --description=x
Error: client name is empty
> deposit --client="   " --amount=1 --description=x
Error: client name is empty
> transfer --from="Sam Self" --to="" --amount=1
Error: client name is empty
> open_account --client=""
Error: client name is empty
> balance --client=""
Error: client name is empty
> balance --client="Sam Self"
Balance of Sam Self: $10.00
""",
    ),
    Scenario(
        "descriptions up to 500 characters",
        f"""
> deposit --client="Dee Long" --amount=1 --description={LONG_DESCRIPTION}
Error: description is longer than 500 characters
> deposit --client="Dee Long" --amount=1 --description={FULL_DESCRIPTION}
Deposit operation was successful!
> balance --client="Dee Long"
Balance of Dee Long: $1.00
""",
    ),
    Scenario(
        "statement periods",
        """
> deposit --client="Pat Period" --amount=70 --description=x
Deposit operation was successful!
> statement --client="Pat Period" --since=2030-01-02 --till=2030-01-01
Error: the start of the period (since) is after its end (till)
> statement --client="Pat Period" --since=yesterday
Error: 'yesterday' is not a date like 2024-01-31, 2024-01-31 18:30:00 or 2024-01-31T18:30:00+02:00
> statement --client="Pat Period" --till=2000-01-01
| Date | Description      | Withdrawals | Deposits | Balance |
|------|------------------|-------------|----------|---------|
|      | Previous balance |             |          |   $0.00 |
|      | Totals           |       $0.00 |    $0.00 |   $0.00 |
> statement --client="Pat Period" --since=2999-01-01 --till="2999-12-31T23:59:59+00:00"
| Date | Description      | Withdrawals | Deposits | Balance |
|------|------------------|-------------|----------|---------|
|      | Previous balance |             |          |  $70.00 |
|      | Totals           |       $0.00 |    $0.00 |  $70.00 |
> statement --client="Pat Period" --format=xml
Error: format 'xml' is not one of table, csv, json
""",
    ),
    Scenario(
        "grammar mistakes",
        """
> depost --client="Gil Grammar" --amount=1 --description=x
Error: unknown command 'depost'; did you mean 'deposit'?
> deposit --client="Gil Grammar" --amout=1 --description=x
Error: deposit has no option --amout; did you mean --amount?
> deposit --client="Gil Grammar" --amount=1
Error: deposit needs --description (usage: deposit --client=NAME --amount=AMOUNT --description=TEXT)
> transfer --from="Gil Grammar" --amount=1
Error: transfer needs --to (usage: transfer --from=NAME --to=NAME --amount=AMOUNT [--description=TEXT])
> deposit --client="Gil Grammar --amount=1 --description=x
Error: cannot read the line: No closing quotation
> deposit --client="Gil Grammar" --amount=1 --description=x \\
Error: cannot read the line: it ends with a backslash, and a command is one line, not continued
> balance --client="Gil Grammar"
Error: no account for client 'Gil Grammar'
""",
    ),
    Scenario(
        "floors and overdrafts",
        """
> deposit --client="Flo Floor" --amount=50 --description=x
Deposit operation was successful!
> withdraw --client="Flo Floor" --amount=50.01 --description=x
Error: insufficient funds: Flo Floor has $50.00 available
> open_account --client="Ove Draft" --min-balance=-100
Account opened for Ove Draft: floor -$100.00, cap none.
> withdraw --client="Ove Draft" --amount=100 --description=x
Withdrawal operation was successful!
> transfer --from="Ove Draft" --to="Flo Floor" --amount=0.01
Error: insufficient funds: Ove Draft has $0.00 available
> balance --client="Ove Draft"
Balance of Ove Draft: -$100.00
> balance --client="Flo Floor"
Balance of Flo Floor: $50.00
""",
    ),
    Scenario(
        "caps",
        """
> open_account --client="Cap Kate" --max-balance=1000
Account opened for Cap Kate: floor $0.00, cap $1,000.00.
> deposit --client="Cap Kate" --amount=900 --description=x
Deposit operation was successful!
> deposit --client="Cap Kate" --amount=100.01 --description=x
Error: the deposit would take Cap Kate above the cap of $1,000.00 (balance $900.00)
> deposit --client="Cap Carl" --amount=500 --description=x
Deposit operation was successful!
> transfer --from="Cap Carl" --to="Cap Kate" --amount=101
Error: the transfer would take Cap Kate above the cap of $1,000.00 (balance $900.00)
> transfer --from="Cap Carl" --to="Cap Kate" --amount=100
Transfer operation was successful!
> open_account --client="Cap Kate"
Error: client 'Cap Kate' already has an account
> balance --client="Cap Kate"
Balance of Cap Kate: $1,000.00
""",
    ),
    Scenario(
        "limits cannot contradict the balance",
        """
> deposit --client="Lim Lee" --amount=100 --description=x
Deposit operation was successful!
> set_limits --client="Lim Lee" --max-balance=99.99
Error: the cap $99.99 would be below the balance $100.00 of Lim Lee
> set_limits --client="Lim Lee" --min-balance=100.01
Error: the floor $100.01 would be above the balance $100.00 of Lim Lee
> set_limits --client="Lim Lee" --min-balance=100 --max-balance=100
Limits of Lim Lee: floor $100.00, cap $100.00.
> withdraw --client="Lim Lee" --amount=0.01 --description=x
Error: insufficient funds: Lim Lee has $0.00 available
> set_limits --client="Lim Lee" --min-balance=-5 --max-balance=none
Limits of Lim Lee: floor -$5.00, cap none.
> set_limits --client="Lim Lee"
Error: set_limits needs --min-balance or --max-balance
> get -n "Lim Lee"
Name:    Lim Lee
Balance: $100.00
Floor:   -$5.00
Cap:     none
""",
    ),
    Scenario(
        "idempotency keys",
        """
> deposit --client="Ida Key" --amount=10 --description=x --idempotency-key=ida-1
Deposit operation was successful!
> deposit --client="Ida Key" --amount=10 --description=x --idempotency-key=ida-1
Deposit operation was successful!
> balance --client="Ida Key"
Balance of Ida Key: $10.00
> deposit --client="Ida Key" --amount=11 --description=x --idempotency-key=ida-1
Error: idempotency key 'ida-1' was already used for another request
> withdraw --client="Ida Key" --amount=10 --description=x --idempotency-key=ida-1
Error: idempotency key 'ida-1' was already used for another request
> deposit --client="Ida Key" --amount=10 --description=x
Deposit operation was successful!
> balance --client="Ida Key"
Balance of Ida Key: $20.00
> withdraw --client="Ida Key" --amount=100 --description=y --idempotency-key=ida-2
Error: insufficient funds: Ida Key has $20.00 available
> deposit --client="Ida Key" --amount=100 --description=x
Deposit operation was successful!
> withdraw --client="Ida Key" --amount=100 --description=y --idempotency-key=ida-2
Error: insufficient funds: Ida Key has $20.00 available (the first answer under --idempotency-key=ida-2, given again)
> balance --client="Ida Key"
Balance of Ida Key: $120.00
""",
    ),
)
