"""The `kopilka` command: the shell, one-shot commands, and the server's subcommands.

    kopilka [shell] [--db PATH|URL] [--sandbox] [--url URL] [--token TOKEN] [PORT]
    kopilka deposit --client="John Jones" --amount=100 --description="ATM Deposit"
    kopilka init | add-user | transfer | get | ...   (see `kopilka help`)
    kopilka serve ... | kopilka token ...

Global options (`--db`, `--url`, `--token`, `--ledger`, `--config`, and the shell's
`--sandbox`) may come before or after the command. A one-shot command exits 0 on
success and 1 on a refusal, with `Error: ...` on stderr (docs/usage.md: 3 and 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import io
import logging
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from kopilka import __version__
from kopilka.bank import Bank
from kopilka.decided import answered, answering
from kopilka.errors import (
    InvalidInput,
    KopilkaError,
    Unavailable,
    mark_settled,
    not_begun,
    sandbox_and,
)
from kopilka.home import make_home
from kopilka.interrupts import kept_while_loading
from kopilka.redaction import hide_secrets, quoted, redact_url
from kopilka.settings import Settings, load_settings, unread_variable_warnings
from kopilka.shell.commands import (
    ON_OPEN_ACCOUNTS,
    READS_ONLY,
    Action,
    applied_reply,
    calls_handed,
    execute,
    interrupted_write,
    needs_bank,
    prepare,
    settle_write,
)
from kopilka.shell.connect import Target, open_bank, open_bank_tried_first, said_in_one_line
from kopilka.shell.output import (
    ANSWER_NOT_WRITTEN_EXIT,
    CHECK_BEFORE_REPEATING,
    FAILING_ERROR_HANDLERS,
    AnswerNotWritten,
    Output,
    answer,
    exit_status,
)
from kopilka.shell.parser import closest, closest_option, looks_like_an_option, parse_words
from kopilka.shell.render import help_command, help_overview
from kopilka.shell.repl import SessionEnded, SignalEnding, run_piped, run_terminal
from kopilka.shell.specs import COMMANDS, GLOBAL_VALUES, find_command
from kopilka.shell.waiting_input import waiting_input
from kopilka.store import initialize_schema, keeps_nothing, upgraded

# Subcommands with their own option parsers, loaded only when asked for.
_DELEGATED = {
    "serve": ("kopilka.server", "serve_main"),
    "token": ("kopilka.token_cli", "token_main"),
}
# The global options each of them takes (`token create` takes a --ledger of its own).
_DELEGATED_GLOBALS = {
    "serve": ("db", "config"),
    "token": ("db", "url", "token", "config", "ledger"),
}
# What `kopilka shell` takes besides a port, for a mistyped one to be matched against.
_SHELL_OPTIONS = ("--sandbox", *(f"--{name}" for name in GLOBAL_VALUES), "--help")
# What `kopilka` takes before a command's name, for a mistyped one to be matched against.
_PROGRAM_OPTIONS = (*_SHELL_OPTIONS, "--version")
SHELL_USAGE = (
    "kopilka shell [--db PATH|URL] [--sandbox] [--url URL] [--token TOKEN] [--ledger NAME]"
    " [--config FILE] [PORT]"
)
USAGE = f"""Usage:
  {SHELL_USAGE}
  kopilka COMMAND [OPTIONS]         run one command and exit (0 done, 1 refused,
                                    3 done but its answer unwritten, 4 outcome unknown)
  kopilka init                      create or upgrade the database schema (not via --url)
  kopilka serve [--host H] [--port P | PORT] [--db URL] [--workers N]   (serve --help)
  kopilka token create|list|revoke [--url URL] ...
Global options, before or after the command (--sandbox for the shell only; serve
takes --db and --config, token all but --sandbox, --ledger for token create alone):
  --db PATH|URL  --url URL  --token TOKEN  --ledger NAME  --config FILE  --sandbox
"""


@dataclass(slots=True)
class GlobalOptions:
    values: dict[str, str] = field(default_factory=dict)
    sandbox: bool = False
    # Where the command's word stands among the arguments (a global option's value may
    # be the same word: `--ledger serve serve`).
    command_at: int | None = None


def split_globals(arguments: list[str]) -> tuple[GlobalOptions, list[str]]:
    """Take the global options out of the arguments, wherever they stand."""
    options = GlobalOptions()
    rest: list[str] = []
    index = 0
    while index < len(arguments):
        word = arguments[index]
        index += 1
        spelling, has_value, value = word.partition("=")
        name = spelling.removeprefix("--")
        if spelling == "--sandbox":
            if has_value:  # `--sandbox=no` would read as yes
                raise InvalidInput("invalid_option", "option --sandbox takes no value")
            if options.sandbox:  # as every other option: given twice is refused
                raise InvalidInput("repeated_option", "kopilka got --sandbox twice")
            options.sandbox = True
        elif spelling.startswith("--") and name in GLOBAL_VALUES:
            if not has_value:
                if index >= len(arguments):
                    raise InvalidInput("missing_value", f"option {spelling} needs a value")
                value = arguments[index]
                if looks_like_an_option(value):
                    # Another option, its value left out (`--db --ledger=books` made a
                    # database of that name), or a command's value such as `--db`.
                    raise InvalidInput(
                        "missing_value",
                        f"option {spelling} needs a value; one that starts with '-' is"
                        f" written {spelling}=VALUE",
                    )
                index += 1
            if name in options.values:  # as a command's own options: never the last one wins
                raise InvalidInput("repeated_option", f"kopilka got --{name} twice")
            options.values[name] = value
        else:
            if not rest:
                options.command_at = index - 1
            rest.append(word)
    return options, rest


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    # Balances, histories and tokens are the user's alone: every file and directory
    # kopilka makes (the database and its WAL, the home, the shell's history) is private.
    os.umask(0o077)
    if sys.stdout is None:  # started with it closed: say so before anything is done
        if sys.stderr is not None:
            print("Error: standard output is closed; nothing was done", file=sys.stderr)
        return 1
    _settle_streams()
    for warning in unread_variable_warnings(os.environ):
        with contextlib.suppress(OSError):
            print(f"Warning: {warning}", file=sys.stderr)
    try:
        return _dispatch(arguments)
    except AnswerNotWritten as error:
        with contextlib.suppress(OSError):
            print(f"Error: {hide_secrets(error.message)}", file=sys.stderr)
        return ANSWER_NOT_WRITTEN_EXIT
    except KopilkaError as error:
        print(f"Error: {hide_secrets(error.message)}", file=sys.stderr)
        return exit_status(error)
    except KeyboardInterrupt:
        return 130
    except SessionEnded as ended:  # a one-shot command's SIGTERM or SIGHUP
        return 128 + ended.signum
    except BrokenPipeError:
        # The reader went away (`kopilka statement ... | head`): stop quietly, as cat does,
        # and keep Python from complaining again while it flushes stdout at exit. Not 1
        # ("refused, nothing changed"): a deposit whose answer found no reader was made.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ANSWER_NOT_WRITTEN_EXIT
    except OSError as error:  # the machine refused something (a file, a directory): one line
        print(f"Error: {hide_secrets(str(error))}", file=sys.stderr)
        return 1


def _settle_streams() -> None:
    """Streams every command may write to and read from as it is. Started with stderr
    closed, errors go nowhere (the exit status says it): print() would put them on
    stdout, to be read as the answer. A character the output's encoding lacks is written
    escaped, not as a traceback; one the input's encoding cannot read is kept as an
    unpaired surrogate, which the rules refuse as no name or text of anyone's. Input
    left non-blocking is waited for, not taken to have ended (waiting_input.py)."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for as long as the process runs
    if sys.stdin is None:  # closed (<&-): read as empty, a shell then has nothing to do
        sys.stdin = open(os.devnull)  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        # surrogateescape is Python's own under a C locale without UTF-8 mode.
        if isinstance(stream, io.TextIOWrapper) and stream.errors in FAILING_ERROR_HANDLERS:
            stream.reconfigure(errors="backslashreplace")
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="surrogateescape")
    sys.stdin = waiting_input(sys.stdin)


def _dispatch(arguments: list[str]) -> int:
    options, words = split_globals(arguments)
    command = words[0] if words else "shell"
    if command != "serve":
        # A store's warnings (the database away, refusing its work) are for a server's
        # log; here the command's own `Error:` line says it, once.
        logging.getLogger("kopilka.store").setLevel(logging.ERROR)
        _warn_of_waits()
    if words and looks_like_an_option(command) and command not in ("--help", "-h", "--version"):
        # Not the command: an option that none of kopilka's own before it is.
        raise _unknown_option_before_command(command, words[1:])
    asked = _help_asked_about(words)
    if asked in (*_DELEGATED, "shell"):
        # The commands with parsers of their own: `kopilka help serve` is `serve --help`.
        return _dispatch([asked, "--help"])
    if command in _DELEGATED:
        at = options.command_at
        assert at is not None and arguments[at] == command
        _refuse_globals_not_taken(command, arguments[:at])
        # After the command's own words, where its subcommands' parsers read them too.
        return _delegate(command, arguments[at + 1 :] + arguments[:at])
    if command in ("--help", "-h"):
        answer(USAGE + "\n" + help_overview(oneshot=True))
        return 0
    if command == "--version":
        answer(f"kopilka {__version__}")
        return 0
    if command == "shell":
        return _shell(options, words[1:])
    if command == "init":
        return _init(options, words[1:])
    return _oneshot(options, words)


def _unknown_option_before_command(word: str, after: list[str]) -> InvalidInput:
    """`kopilka --ur URL balance` named as the option it is, not an unknown command."""
    spelling = word.partition("=")[0]  # never a value: it may be a token
    shown = spelling if spelling.isprintable() else repr(spelling)
    if spelling == "--":  # the end of options of other programs: no option of any
        return InvalidInput("unknown_option", "kopilka takes no --: give each option as it is")
    if spelling in (*_PROGRAM_OPTIONS, "-h"):  # --help=x
        return InvalidInput("invalid_option", f"option {shown} takes no value")
    delegated = _command_after(after)
    if delegated not in _DELEGATED:
        delegated = None
    if delegated is not None or any(spec.option(spelling) is not None for spec in COMMANDS):
        # serve's and token's options are their own parsers' to know.
        named = delegated or "the command"
        return InvalidInput(
            "unknown_option",
            f"{shown} is no option of kopilka's own: give it after {named}'s name",
        )
    close = closest_option(spelling, list(_PROGRAM_OPTIONS))
    hint = (
        f"did you mean {close}?"
        if close
        else f"before a command it takes {', '.join(_PROGRAM_OPTIONS)}"
    )
    return InvalidInput("unknown_option", f"kopilka has no option {shown}; {hint}")


def _command_after(after: list[str]) -> str | None:
    """The command's name after an unknown option: the next word, or the one after it
    if the option took that one as its value (`--role admin token create`)."""
    known = {"shell", *_DELEGATED, *(spec.name for spec in COMMANDS)}
    for word in after[:2]:
        if word in known:
            return word
    return None


def _help_asked_about(words: list[str]) -> str | None:
    """The command `help` is asked about, read as the shell's parser reads `help` (bare,
    or as its --command); None for another command, or a help it refuses."""
    if words[:1] != ["help"]:
        return None
    with contextlib.suppress(InvalidInput):
        return parse_words(words, oneshot=True).get("command")
    return None


def _refuse_globals_not_taken(command: str, before: list[str]) -> None:
    """A global option before `serve` or `token` that it has no use for, named as given:
    its own parser would take the option's value for an argument of its own."""
    for word in before:
        name = word.partition("=")[0].removeprefix("--")
        is_global = word.startswith("--") and name in (*GLOBAL_VALUES, "sandbox")
        if is_global and name not in _DELEGATED_GLOBALS[command]:
            raise InvalidInput(
                "invalid_option",
                f"kopilka {command} does not take --{name} (see kopilka {command} --help)",
            )


def _delegate(command: str, arguments: list[str]) -> int:
    module_name, function_name = _DELEGATED[command]
    try:
        with kept_while_loading():  # the server's modules: a stop lost there was never seen
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # a dependency of that module is missing: a real fault, shown in full
        raise Unavailable(
            "command_unavailable", f"'kopilka {command}' is not part of this installation"
        ) from error
    entry: Callable[[list[str]], int] = getattr(module, function_name)
    return entry(arguments)


def _target(options: GlobalOptions, port: int | None = None) -> Target:
    for name in ("ledger", "db"):
        if options.sandbox and options.values.get(name) is not None:
            raise sandbox_and(name)
    flags = {name: options.values.get(name) for name in ("db", "url", "ledger")}
    settings = load_settings(flags, config_path=options.values.get("config"))
    url = options.values.get("url")
    if port is not None:
        if url is not None:
            raise InvalidInput("invalid_option", "give either --url or a port, not both")
        url = f"http://127.0.0.1:{port}"
    if url is None:
        url = settings.url  # None when a database was given at a stronger place
    # As given, "" too: the client reads KOPILKA_TOKEN, and refuses an empty one.
    return Target(settings, url, options.values.get("token"), options.sandbox)


def _shell(options: GlobalOptions, words: list[str]) -> int:
    if any(word in ("--help", "-h") for word in words):
        answer(f"Usage: {SHELL_USAGE}")
        return 0
    _refuse_unknown_shell_options(words)
    if len(words) > 1:
        raise InvalidInput(
            "unexpected_argument",
            f"kopilka shell takes one port, not also {quoted(words[1])}; usage: {SHELL_USAGE}",
        )
    if words and not (words[0].isascii() and words[0].isdigit()):
        raise InvalidInput(
            "unexpected_argument",
            f"kopilka shell's PORT is a port number, not {quoted(words[0])}; usage: {SHELL_USAGE}",
        )
    port = int(words[0]) if words else None
    if port is not None and not 0 < port < 65536:
        raise InvalidInput("invalid_option", f"port {port} is out of range")
    target = _target(options, port)
    with SignalEnding() as ending:
        try:
            return _run_shell(target, ending)
        except SessionEnded as ended:
            return 128 + ended.signum  # as a shell reports a command a signal ended


def _refuse_unknown_shell_options(words: list[str]) -> None:
    """A mistyped option (`--sandbx`) named, with the one meant: the bare usage left the
    typist to find which word was wrong. The global options are taken out already."""
    for word in words:
        if looks_like_an_option(word):
            spelling = word.partition("=")[0]  # never a value: it may be a token
            shown = spelling if spelling.isprintable() else repr(spelling)
            close = closest(spelling, list(_SHELL_OPTIONS))
            hint = f"did you mean {close}?" if close else f"usage: {SHELL_USAGE}"
            raise InvalidInput("unknown_option", f"kopilka shell has no option {shown}; {hint}")


def _run_shell(target: Target, ending: SignalEnding) -> int:
    bank = open_bank(target)
    try:
        ledger = _check_reachable(bank) if target.url is not None else None
        # A dumb terminal (Emacs' M-x shell) draws no line prompt_toolkit edits: it
        # showed one line and ran another. Its own line editing is what runs there.
        drawn = os.environ.get("TERM") != "dumb"
        if sys.stdin.isatty() and sys.stdout.isatty() and drawn:
            greeting = (
                f"kopilka shell on {target.describe(ledger)}.\n"
                "Type 'help' for the commands, 'exit' or Ctrl-D to leave."
            )
            output = Output.for_streams(sys.stdout)
            history = target.settings.home / "history"
            return run_terminal(bank, output, history, greeting, ending)
        if sys.stdin.isatty():
            # Typed at a terminal, answers to a file or a pipe (`kopilka shell > log.txt`),
            # or at a dumb terminal: a prompt drawn there would leave the typist blind
            # and fill the file with its redraws. Lines are read as from a pipe, the
            # terminal echoes them, and a refusal goes to stderr, where the typist sees it.
            return run_piped(bank, sys.stdin, Output(sys.stdout, sys.stderr, terminal=False))
        # Piped input: plain text even when stdout is a terminal, so scripts see one form.
        return run_piped(bank, sys.stdin, Output(sys.stdout, sys.stdout, terminal=False))
    finally:
        try:
            if target.url is not None and target.sandbox:
                _drop_sandbox(bank)
        finally:
            bank.close()  # a Ctrl-C while the sandbox is dropped closes it all the same


def _drop_sandbox(bank: Bank) -> None:
    """A sandbox the server could not be told to drop (it is down) is said to be left
    there, with its data, until its idle timeout: leaving quietly let the user think it
    gone. The status stays the session's: its commands were done and answered."""
    from kopilka.client import Client  # loaded already: the bank is one

    assert isinstance(bank, Client)
    try:
        bank.drop_sandbox()
    except KopilkaError as error:
        with contextlib.suppress(OSError):  # a terminal closed (SIGHUP) cannot be told
            print(f"Warning: {hide_secrets(error.message)}", file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C while the server was being told: said all the same
        if bank.sandbox_left is not None:
            with contextlib.suppress(OSError):
                print(f"Warning: {hide_secrets(bank.sandbox_left)}", file=sys.stderr)
        raise


def _check_reachable(bank: Bank) -> str | None:
    """A shell on a server it cannot reach, or with a token it does not honour, ends at
    once with that error (exit 1), as a sandbox does, rather than reading every line
    only to print the same error for it. Returns the ledger the session writes to: the
    one it names (a sandbox, --ledger), else its token's, as the server tells."""
    from kopilka.client import Client  # loaded already: the bank is one

    assert isinstance(bank, Client)
    try:
        told = bank.whoami().get("ledger")
        ledger = bank.ledger_named or told
        return ledger if isinstance(ledger, str) else None
    except KopilkaError as error:
        # Unreachable, a token it does not honour, a ledger its token may not use (every
        # role may ask whoami, so a refusal is the ledger's), or no kopilka at all (an
        # answer without kopilka's error body): nothing any command could do.
        if error.code in ("server_unreachable", "unauthorized", "forbidden", "bad_response"):
            raise
        if error.code == "not_found":  # a kopilka, but the URL has a path it does not serve
            raise InvalidInput(
                "invalid_url",
                f"the server at {bank.shown_url} has no kopilka API there ({error.message}):"
                " give its address as http://HOST:PORT",
            ) from None
        # A kopilka answered: whatever else ails it is told command by command.
        return None


def _oneshot(options: GlobalOptions, words: list[str]) -> int:
    parsed = dataclasses.replace(
        parse_words(words, oneshot=True), reached_with=_reached_with(options)
    )
    output = Output.for_streams(sys.stdout, sys.stderr)
    if not needs_bank(parsed):  # help
        try:
            output.show(execute(parsed, None, oneshot=True))
        except AnswerNotWritten as unwritten:
            raise _nothing_to_check(unwritten) from unwritten
        return 0
    if options.sandbox:  # it would be dropped as the command ends, and what it did with it
        raise InvalidInput(
            "invalid_option",
            f"{parsed.spec.name} would work in a sandbox that ends with it, keeping nothing:"
            " --sandbox is for a shell session (kopilka shell --sandbox)",
        )
    target = _target(options)
    if target.url is None and keeps_nothing(target.settings.db):
        raise InvalidInput(
            "invalid_option",
            f"{parsed.spec.name} would work on a ledger in memory that ends with it, keeping"
            " nothing: memory: is for a server or a shell session",
        )
    reads_only = parsed.spec.name in READS_ONLY
    # SIGTERM and SIGHUP (a `timeout`, a closed terminal) as Ctrl-C: a write they cut
    # short says what became of it.
    with SignalEnding():
        try:
            action = prepare(parsed)
            if reads_only or parsed.spec.name in ON_OPEN_ACCOUNTS:
                bank = open_bank(target, makes_none=True)
            else:  # it may make the ledger, unless it is refused
                bank = open_bank_tried_first(target, action)
        except KopilkaError as error:  # said as a refusal by the ledger is
            return _refused(output, error)
        except (KeyboardInterrupt, SessionEnded) as interruption:
            if not reads_only:  # stopped as the ledger opened (a write tried in memory)
                mark_settled(interruption, not_begun())
                _say_interrupted(output, interruption)
            raise
        try:
            return _answered(action, bank, output, reads_only=reads_only)
        finally:
            bank.close()


# What a write says whose answer a second signal stopped as it was written.
_ANSWER_INTERRUPTED = (
    f"the command ran, but its answer could not be written (interrupted){CHECK_BEFORE_REPEATING}"
)


def _answered(action: Action, bank: Bank, output: Output, *, reads_only: bool) -> int:
    """Run the command and write its answer: the status it ends with, decided once the
    answer is written, whatever signal comes while the bank closes and the program ends.
    A write a signal came too late to stop (applied by then) is answered as any write
    done is, with status 0: its signal changed nothing, and a script that read 130 in
    `$?` ran it again."""
    since = calls_handed(bank)
    reply = None
    try:
        reply = action(bank)
        if not reads_only:  # its answer written whole, or not at all
            answering(0, ANSWER_NOT_WRITTEN_EXIT, _ANSWER_INTERRUPTED)
    except KopilkaError as error:
        return _refused(output, error)
    except (KeyboardInterrupt, SessionEnded) as interruption:
        if reads_only:
            raise
        # With the answer in hand already (the signal came as the handlers that hold it
        # were being set), the write is done, a client's over --url too: said so.
        if reply is None:
            try:
                settle_write(interruption, bank, since)
            except (KeyboardInterrupt, SessionEnded):  # again: its end is not waited for
                _given_up(output, interruption, bank)
                raise
            reply = applied_reply(action, interruption)
            if reply is None:
                _given_up(output, interruption, bank)
                raise
        answering(0, ANSWER_NOT_WRITTEN_EXIT, _ANSWER_INTERRUPTED)
    try:
        output.show(reply)
    except AnswerNotWritten as unwritten:
        if reads_only:
            raise _nothing_to_check(unwritten) from unwritten
        raise  # it ran: the command line says so, with its own exit status
    answered(0)
    return 0


def _refused(output: Output, error: KopilkaError) -> int:
    output.error(error.message)
    status = exit_status(error)
    answered(status)
    return status


def _say_interrupted(output: Output, interruption: KeyboardInterrupt | SessionEnded) -> None:
    """What became of a write a signal stopped, and the status that says so decided."""
    said = interrupted_write(interruption)
    assert said is not None  # its answer is written by the caller, after
    output.error(said)
    answered(128 + interruption.signum if isinstance(interruption, SessionEnded) else 130)


def _given_up(output: Output, interruption: KeyboardInterrupt | SessionEnded, bank: Bank) -> None:
    """A write stopped and not applied, or whose end was not waited for (a second signal):
    said, and the bank closed without waiting for it either, nor the program's end."""
    _say_interrupted(output, interruption)
    bank.close(waiting_for_writes=False)


def _nothing_to_check(unwritten: AnswerNotWritten) -> AnswerNotWritten:
    """A read's or help's answer not written: nothing it did to check before it is run
    again."""
    message = unwritten.message.removesuffix(CHECK_BEFORE_REPEATING)
    return AnswerNotWritten(unwritten.code, message)


def _reached_with(options: GlobalOptions) -> str:
    """The global options given, to repeat in a command suggested to the user (a token
    only by name: its secret is not written out again)."""
    # A database URL's password masked before it is quoted: quoted, one with a `'` in it
    # would no longer be found whole by the masking of the message.
    given = []
    for name in ("db", "url", "ledger", "config"):
        value = options.values.get(name)
        if value is not None:
            shown = redact_url(value) if name == "db" else value
            given.append(" " + shlex.quote(f"--{name}={shown}"))
    if "token" in options.values:
        given.append(" --token=TOKEN")
    return "".join(given)


def _init(options: GlobalOptions, words: list[str]) -> int:
    if words in (["--help"], ["-h"]):
        spec = find_command("init", oneshot=True)
        assert spec is not None
        answer(help_command(spec, oneshot=True))
        return 0
    if words:
        raise InvalidInput("unexpected_argument", "init takes no arguments (usage: kopilka init)")
    for name in ("ledger", "token"):  # given for init, as `token list` refuses them
        if name in options.values:
            raise InvalidInput(
                "invalid_option", f"init sets up the whole database: it takes no --{name}"
            )
    target = _target(options)
    if target.sandbox:
        raise InvalidInput(
            "invalid_option", "init works on a database; a sandbox has none to set up"
        )
    if target.url is not None:
        # A server's schema is its database's: init runs where that database is named.
        raise InvalidInput(
            "invalid_option",
            f"init works on a database, not a server ({redact_url(target.url)}):"
            " give --db, and no --url (a server named beside a database, in the"
            " environment or kopilka.toml, wins over it)",
        )
    settings = target.settings
    if keeps_nothing(settings.db):
        raise InvalidInput(
            "invalid_option", "init works on a database that is kept; memory: keeps nothing"
        )
    _create_home(settings)
    with said_in_one_line(settings.db):
        ready = asyncio.run(initialize_schema(settings.db))
    where = redact_url(settings.db)
    if ready.database is not None and ready.database != _path_database(settings.db):
        # Not the URL's path: libpq's default (PGDATABASE, or the user's name), a
        # service's or a dbname= parameter's, which the operator may not have in mind.
        where = f"database {ready.database!r} at {where}"
    found, now = ready.versions or (0, 0)
    said = upgraded(ready.versions, where)
    if said is not None:
        answer(said)
    elif found == now:
        answer(f"Schema is up to date in {where}.")
    else:
        answer(f"Schema created in {where} (version {now}).")
    if ready.folds_given:
        # An older kopilka left running through the upgrade opened them outside the rule
        # of names alike but for case (docs/operations.md).
        accounts = "1 account" if ready.folds_given == 1 else f"{ready.folds_given} accounts"
        answer(
            f"Folded the names of {accounts} opened without one (by an older kopilka):"
            " a new name alike theirs (but for case, or drawn alike) is now refused."
        )
    return 0


def _warn_of_waits() -> None:
    """A wait for another process's upgrade of the schema, which may last as long as that
    takes, is said on stderr as it begins: in silence, the command looked hung."""
    upgrades = logging.getLogger("kopilka.store.postgres_migrate")
    if upgrades.handlers:  # set already (`kopilka help serve` dispatches again)
        return
    upgrades.setLevel(logging.WARNING)
    upgrades.propagate = False
    said = _ToStderr()
    said.setFormatter(logging.Formatter("Warning: %(message)s"))
    upgrades.addHandler(said)


class _ToStderr(logging.Handler):
    """To sys.stderr as it is when a warning comes (a StreamHandler keeps the stream it
    was made with, which a test running commands in process may have closed since)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def _path_database(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def _create_home(settings: Settings) -> None:
    if settings.db == str(settings.home / "kopilka.db"):
        make_home(settings.home)
