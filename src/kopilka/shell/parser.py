"""The command-line grammar: `deposit --client="John Jones" --amount=100`.

Words are split by shlex in POSIX mode (single and double quotes, backslash
escapes). Options are `--opt=value` or `--opt value`, plus the short aliases
a command declares (`-f value`). Every mistake is an InvalidInput with a
one-line message, so the shell prints `Error: ...` and keeps going.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field

from kopilka.errors import InvalidInput
from kopilka.shell.specs import GLOBAL_VALUES, CommandSpec, command_names, find_command

# A word that is an option rather than a value: "--x" or "-x" (but "-5" is a value).
# DOTALL: a one-shot's value may hold a newline (`--description=$'a\nb'`); the word is
# still an option, and the domain judges its value.
_OPTION_WORD = re.compile(r"--.*|-[A-Za-z]\w*(=.*)?", re.DOTALL)
LINE_LENGTH_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    spec: CommandSpec
    values: dict[str, str] = field(default_factory=dict)  # canonical option name -> text
    oneshot: bool = False  # typed in the OS shell, `kopilka` before it
    # The options that chose its ledger and where it is (--db, --url, ...), as given on
    # the command line: a command it suggests must look in the same place.
    reached_with: str = ""

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def require(self, name: str) -> str:
        value = self.values.get(name)
        assert value is not None, f"{self.spec.name} declares --{name} as required"
        return value


def line_too_long() -> InvalidInput:
    return InvalidInput("invalid_command", f"line is longer than {LINE_LENGTH_MAX} characters")


def split_line(line: str) -> list[str]:
    """Shell words of a line; blank lines and `#` comments give no words."""
    if not line.strip() or line.lstrip().startswith("#"):  # a comment of any length
        return []
    if len(line) > LINE_LENGTH_MAX:
        raise line_too_long()
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as error:  # shlex: "No closing quotation", "No escaped character"
        reason = str(error)
        if reason == "No escaped character":
            # A continuation, as another shell takes it; in open double quotes, the
            # backslash escapes the end of the line too, and the quote is what is wrong.
            if _quotes_closed(line.rstrip("\r\n")[:-1]):
                reason = "it ends with a backslash, and a command is one line, not continued"
            else:
                reason = "No closing quotation"
        raise InvalidInput("invalid_command", f"cannot read the line: {reason}") from error


def _quotes_closed(line: str) -> bool:
    try:
        shlex.split(line, comments=False, posix=True)
    except ValueError as error:
        return str(error) != "No closing quotation"
    return True


def looks_like_an_option(word: str) -> bool:
    """An option (`--db`, `-h`), not a value that starts with '-' (`-5`, `-x.db`)."""
    return _OPTION_WORD.fullmatch(word) is not None


def parse_line(line: str) -> ParsedCommand | None:
    """A command of the shell, or None for a line with nothing to do."""
    words = split_line(line)
    return parse_words(words) if words else None


def parse_words(words: list[str], *, oneshot: bool = False) -> ParsedCommand:
    """A command from words already split (by shlex, or by the OS shell for one-shots)."""
    assert words, "a command needs at least its name"
    name, arguments = words[0], words[1:]
    spec = find_command(name, oneshot=oneshot)
    if spec is None:
        raise unknown_command(name, oneshot=oneshot)
    if _asks_for_help(spec, arguments):  # `help --help` too: help explains itself
        help_spec = find_command("help", oneshot=oneshot)
        assert help_spec is not None
        return ParsedCommand(help_spec, {"command": spec.name})
    values = _read_options(spec, arguments, oneshot=oneshot)
    missing = [o for o in spec.options if o.required and o.name not in values]
    if missing:
        # One that may be given bare is named so (`transfer -f A -t B 50`, the e-wallet's
        # form, which the usage line does not show).
        listed = ", ".join(
            f"{o.spellings[0]} or {o.metavar} alone"
            if o.name == spec.positional
            else o.spellings[0]
            for o in missing
        )
        raise InvalidInput("missing_option", f"{spec.name} needs {listed} (usage: {spec.usage})")
    return ParsedCommand(spec, values, oneshot)


def _asks_for_help(spec: CommandSpec, arguments: list[str]) -> bool:
    """`--help` or `-h` standing as an option, not where an option's value is due
    (`--description -h`): there it is no request for help, and no value either."""
    for index, word in enumerate(arguments):
        if word in ("--help", "-h"):
            before = arguments[index - 1] if index else ""
            if not (_OPTION_WORD.fullmatch(before) and spec.option(before) is not None):
                return True
    return False


# Commands of `kopilka` itself, which the command line reads before any of the shell's.
_PROGRAM_COMMANDS = ("serve", "token", "shell")


def unknown_command(name: str, *, oneshot: bool = False) -> InvalidInput:
    """An error naming the closest known command, if one is close enough."""
    if not oneshot and (name in command_names(oneshot=True) or name in _PROGRAM_COMMANDS):
        return InvalidInput(
            "unknown_command", f"{name!r} is a command of the OS shell: run 'kopilka {name}'"
        )
    if not oneshot and name == "kopilka":  # a one-shot command line pasted in
        return InvalidInput(
            "unknown_command", "in the shell, type the command without 'kopilka' before it"
        )
    if oneshot and name.isascii() and name.isdigit():  # `kopilka 8889`: a server's port
        return InvalidInput(
            "unknown_command",
            f"unknown command {name!r}; for a shell on the server at port {name} of this"
            f" machine, run 'kopilka shell {name}'",
        )
    known = command_names(oneshot=oneshot)
    if oneshot:  # `kopilka shelll` is `kopilka shell` mistyped, not `kopilka help`
        known.extend(_PROGRAM_COMMANDS)
    close = closest(name, known)
    hint = f"did you mean {close!r}?" if close else "type 'help' to list the commands"
    return InvalidInput("unknown_command", f"unknown command {name!r}; {hint}")


def closest(word: str, known: list[str]) -> str | None:
    """The known spelling nearest to `word`, ignoring case: `DEPOSIT` is meant as `deposit`.
    Never `word` itself: one that is not taken where it stands is no correction of it."""
    by_folded = {spelling.casefold(): spelling for spelling in known if spelling != word}
    close = difflib.get_close_matches(word.casefold(), list(by_folded), n=1)
    return by_folded[close[0]] if close else None


_QUOTED = "a value with spaces in quotes"


def _read_options(spec: CommandSpec, words: list[str], *, oneshot: bool) -> dict[str, str]:
    values: dict[str, str] = {}
    bare: list[str] = []  # taken once the options are read, to tell what a second one is
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not _OPTION_WORD.fullmatch(word):
            if word.startswith("#") and not oneshot:  # no value of any command's
                raise InvalidInput(
                    "unexpected_argument",
                    f"{spec.name} takes no bare {word!r}:"
                    " # begins a comment only at the start of a line",
                )
            _positional_name(spec, word)
            bare.append(word)
            continue
        spelling, has_value, value = word.partition("=")
        option = spec.option(spelling)
        if option is None:
            raise _unknown_option(spec, spelling, oneshot=oneshot)
        if not has_value:
            if index >= len(words):
                raise InvalidInput(
                    "missing_value", f"option {spelling} needs a value ({option.metavar})"
                )
            following = words[index]
            if looks_like_an_option(following):
                # The next option, its value left out; or a value such as -5, which the
                # hint shows how to give.
                is_option = spec.option(following.partition("=")[0]) is not None
                # Quoted when it holds a newline or an escape: one line, shown as typed.
                shown = following if following.isprintable() else repr(following)
                hint = (
                    "" if is_option else f"; one that starts with '-' is written {spelling}={shown}"
                )
                raise InvalidInput(
                    "missing_value", f"option {spelling} needs a value ({option.metavar}){hint}"
                )
            value = words[index]
            index += 1
        _store(spec, values, option.name, value)
    if bare:
        name = _positional_name(spec, bare[0])
        if len(bare) > 1:
            raise _a_second_bare_word(spec, values, name, bare)
        if name in values:  # typed once as an option, once bare: not "--amount twice"
            given = f"--{name}={values[name]}"
            shown = given if given.isprintable() else repr(given)  # the error one line
            # The end of a value typed unquoted, more likely than a second amount.
            raise InvalidInput(
                "repeated_option",
                f"{spec.name} got {name.upper()} twice: as {shown} and as {bare[0]!r}; {_QUOTED}",
            )
        _store(spec, values, name, bare[0])
    return values


def _a_second_bare_word(
    spec: CommandSpec, values: dict[str, str], name: str, bare: list[str]
) -> InvalidInput:
    """`transfer -f Ann Bob 5`: an option's name left out, more likely than a second
    amount; so the options still missing on the whole line are named, as they are to
    be given."""
    got = f"{spec.name} takes one bare {name.upper()}, and got {bare[0]!r} and {bare[1]!r}"
    missing = [o for o in spec.options if o.required and o.name not in values and o.name != name]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        spelt = " ".join(f"{o.spellings[0]}={o.metavar}" for o in missing)
        listed = " and ".join(o.spellings[0] for o in missing)
        got += f": {listed} {verb} missing, given as {spelt}"
    else:  # every option there: a word of one's value, typed unquoted, more likely
        got += f"; {_QUOTED}"
    return InvalidInput("unexpected_argument", f"{got} (see {spec.name} --help)")


def _positional_name(spec: CommandSpec, word: str) -> str:
    if spec.positional is None:
        raise InvalidInput(
            "unexpected_argument",
            f"{spec.name} takes no bare argument {word!r}; options look like --name=value,"
            f" {_QUOTED}",
        )
    return spec.positional


def _store(spec: CommandSpec, values: dict[str, str], name: str, value: str) -> None:
    if name in values:
        raise InvalidInput("repeated_option", f"{spec.name} got --{name} twice")
    values[name] = value


def _unknown_option(spec: CommandSpec, spelling: str, *, oneshot: bool) -> InvalidInput:
    known = [s for option in spec.options for s in option.spellings]
    # A one-shot's own options come with kopilka's (its --url, its --db), before or after.
    global_options = [f"--{name}" for name in GLOBAL_VALUES] if oneshot else []
    # Quoted when it holds a newline or the like, so the error stays one line.
    shown = spelling if spelling.isprintable() else repr(spelling)
    if not known and not global_options:
        return InvalidInput("unknown_option", f"{spec.name} takes no options, not {shown}")
    if spelling == "--":  # the shell's end of options: --to was suggested for it
        return InvalidInput("unknown_option", f"{spec.name} takes no --: give each value as it is")
    close = closest_option(spelling, known + global_options)
    if close:
        hint = f"did you mean {close}?"
    elif not global_options:
        hint = f"it takes {', '.join(known)}"
    else:
        listed = f"{', '.join(known)} and " if known else "only "
        hint = f"it takes {listed}the global options {', '.join(global_options)}"
    return InvalidInput("unknown_option", f"{spec.name} has no option {shown}; {hint}")


# One thing under another command's word for it: a client is --name to add-user and
# get and --client to the rest; a statement's period runs --since to --till.
_SAME_MEANING = {"--client": "--name", "--name": "--client", "--from": "--since", "--to": "--till"}


def closest_option(spelling: str, known: list[str]) -> str | None:
    """The option meant by one not taken: the command's word for the same thing, the one
    option it is the start of (`--min` of --min-balance) or that it lengthens
    (`--min-balance` of --min), else the nearest spelling. Nearest alone, `--min` was
    nearer to --client than to --min-balance; begun alone, a statement's `--to` was the
    one-shot's --token, not its --till."""
    given = spelling.casefold()
    same = _SAME_MEANING.get(given)
    if same in known:
        return same
    long_options = [option for option in known if option.startswith("--")]
    begun = [option for option in long_options if option.startswith(given)]
    lengthened = [option for option in long_options if given.startswith(f"{option}-")]
    for candidates in (begun, lengthened):
        if len(candidates) == 1:
            return candidates[0]
    return closest(spelling, known)
