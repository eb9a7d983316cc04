"""The e-wallet commands: init, add-user, transfer -f/-t, get."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import RunKopilka


def test_init_creates_the_schema_and_is_idempotent(kopilka: RunKopilka, kopilka_home: Path) -> None:
    database = kopilka_home / "kopilka.db"
    for _ in range(2):
        result = kopilka("init")
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout == f"Schema is up to date in {database}.\n"
    assert database.is_file()


def test_init_never_prints_a_password(kopilka: RunKopilka) -> None:
    result = kopilka("init", "--db", "postgresql://teller:s3cret@127.0.0.1:1/bank")
    assert result.returncode == 1
    assert "s3cret" not in result.stdout + result.stderr
    assert result.stderr.startswith("Error: ")
    assert "postgresql://teller:***@127.0.0.1:1/bank" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_add_user_posts_the_opening_balance_as_a_deposit(kopilka: RunKopilka) -> None:
    added = kopilka("add-user", "-n", "Jane Doe", "--max", "1000", "-c", "100")
    assert (added.returncode, added.stderr) == (0, "")
    assert added.stdout == "Added user Jane Doe: balance $100.00, floor $0.00, cap $1,000.00.\n"
    statement = kopilka("statement", "--client=Jane Doe").stdout.splitlines()
    assert statement[3].endswith("| Opening balance  |             |  $100.00 | $100.00 |")
    assert kopilka("get", "-n", "Jane Doe").stdout == (
        "Name:    Jane Doe\nBalance: $100.00\nFloor:   $0.00\nCap:     $1,000.00\n"
    )


def test_add_user_with_a_positive_floor_and_no_opening_balance(kopilka: RunKopilka) -> None:
    assert kopilka("add-user", "-n", "Flo", "--min", "10", "--max", "none", "-c", "50").stdout == (
        "Added user Flo: balance $50.00, floor $10.00, cap none.\n"
    )
    assert kopilka("add-user", "-n", "Zed", "--max", "20").stdout == (
        "Added user Zed: balance $0.00, floor $0.00, cap $20.00.\n"
    )
    assert kopilka("get").stdout.splitlines() == [
        "| Client | Balance | Floor  | Cap    |",
        "|--------|---------|--------|--------|",
        "| Flo    |  $50.00 | $10.00 |   none |",
        "| Zed    |   $0.00 |  $0.00 | $20.00 |",
    ]


def test_a_refused_add_user_leaves_no_account(kopilka: RunKopilka) -> None:
    refusals = {
        ("-n", "Ann", "--max", "10", "-c", "10.01"): (
            "Error: the opening balance $10.01 is above the cap of $10.00\n"
        ),
        ("-n", "Ann", "--min", "5", "--max", "10"): (
            "Error: the opening balance $0.00 is below the floor $5.00\n"
        ),
        ("-n", "Ann", "--min", "50", "--max", "10", "-c", "60"): (
            "Error: the cap $10.00 is below the floor $50.00\n"
        ),
        ("-n", "Ann", "-c", "5"): "Error: add-user needs --max (usage: add-user -n NAME "
        "[--min AMOUNT] --max AMOUNT|none [-c AMOUNT])\n",
        ("-n", "Ann", "--max", "10", "-c", "-1"): "Error: amount '-1' must be positive\n",
        ("-n", "", "--max", "10"): "Error: client name is empty\n",
    }
    for arguments, stderr in refusals.items():
        result = kopilka("add-user", *arguments)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr), arguments
    assert kopilka("get", "-n", "Ann").stderr == "Error: no account for client 'Ann'\n"
    assert kopilka("add-user", "-n", "Ann", "--max", "10").returncode == 0
    again = kopilka("add-user", "-n", "Ann", "--max", "10")
    assert (again.returncode, again.stderr) == (1, "Error: client 'Ann' already has an account\n")


def test_transfer_exit_codes_and_the_ewallet_rule(kopilka: RunKopilka) -> None:
    kopilka("add-user", "-n", "Payer", "--min", "-20", "--max", "none", "-c", "100")
    kopilka("add-user", "-n", "Payee", "--max", "150", "-c", "100")
    over_cap = kopilka("transfer", "-f", "Payer", "-t", "Payee", "50.01")
    assert (over_cap.returncode, over_cap.stdout) == (1, "")
    assert over_cap.stderr == (
        "Error: the transfer would take Payee above the cap of $150.00 (balance $100.00)\n"
    )
    done = kopilka("transfer", "-f", "Payer", "-t", "Payee", "50", "-d", "rent")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "Transfer operation was successful!\n",
        "",
    )
    kopilka("set_limits", "--client=Payee", "--max-balance=none")
    below_floor = kopilka("transfer", "-t", "Payee", "-f", "Payer", "70.01")
    assert (below_floor.returncode, below_floor.stderr) == (
        1,
        "Error: insufficient funds: Payer has $70.00 available\n",
    )
    assert kopilka("transfer", "-f", "Payer", "-t", "Payee", "70").returncode == 0
    assert kopilka("get", "-n", "Payer").stdout.splitlines()[1] == "Balance: -$20.00"
    assert kopilka("get", "-n", "Payee").stdout.splitlines()[1] == "Balance: $220.00"
