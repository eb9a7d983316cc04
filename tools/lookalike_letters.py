"""Write kopilka's table of letters drawn like Latin ones (src/kopilka/domain/lookalikes.py)
from Unicode's confusables.txt (UTS #39, "Unicode Security Mechanisms"):

    python tools/lookalike_letters.py path/to/confusables.txt > src/kopilka/domain/lookalikes.py

The table is kept in the source, not read from a library at run time: folded names are
stored in the ledger, and a table that changed with an installed package would change
which stored names a new one matches. A new table needs a schema migration that folds
every name again (SQLite schema 11, PostgreSQL migration 10 did it for this one).

Which letters: every letter (category L*) of another alphabet than Latin, as it stands in
a folded name (its own case folding, decomposed), whose shape confusables.txt gives as
that of a plain Latin letter ("о" as "o"), or whose capital's is ("н", whose "Н" is drawn
"H"). A letter of either kind maps to that Latin letter, small; where its small form
and its capital look like two different Latin letters (Greek "ν" like "v", "Ν" like
"N") the small one's wins, as most of a name is in small letters.

And Latin letters that are two letters drawn as one (the Dutch "ĳ", the digraphs of
Serbo-Croatian "ǆ", "ǉ", "ǌ", "ǳ"), read as those two letters: "Ĳsbrand" lists as
"IJsbrand". (Case folding already reads "ﬁ" as "fi".)
"""

from __future__ import annotations

import string
import sys
import unicodedata


def _prototypes(path: str) -> tuple[str, dict[str, str]]:
    """The version of confusables.txt, and each single character it names with the
    string that character is drawn like."""
    version, drawn_like = "", {}
    with open(path, encoding="utf-8-sig") as lines:
        for line in lines:
            if line.startswith("# Version:"):
                version = line.partition(":")[2].strip()
            fields = line.partition("#")[0].split(";")
            if len(fields) < 2:
                continue
            source = "".join(chr(int(point, 16)) for point in fields[0].split())
            target = "".join(chr(int(point, 16)) for point in fields[1].split())
            if len(source) == 1:
                drawn_like[source] = target
    return version, drawn_like


def _table(drawn_like: dict[str, str]) -> dict[str, str]:
    def prototype(text: str) -> str:
        return drawn_like.get(text, text)

    latin_by_prototype: dict[str, set[str]] = {}
    for latin in string.ascii_letters:
        latin_by_prototype.setdefault(prototype(latin), set()).add(latin)

    def latin_alike(character: str) -> str | None:
        if len(character) != 1:
            return None
        alike = latin_by_prototype.get(prototype(character), set())
        # A capital reads as a Latin capital, any other (small, or of no case) as a small
        # letter: Cyrillic "Ӏ" as "I", which folds as "i"; Arabic "ا" as "l".
        same_case = sorted(latin for latin in alike if latin.isupper() == character.isupper())
        found = same_case or sorted(alike)
        return found[0] if found else None

    table = {}
    for point in range(0x80, sys.maxunicode + 1):
        character = chr(point)
        if not unicodedata.category(character).startswith("L"):
            continue
        if unicodedata.name(character, "LATIN").startswith("LATIN"):
            continue
        if character.casefold() != character:  # a folded name never holds it
            continue
        if unicodedata.normalize("NFD", character) != character:
            continue
        if unicodedata.decomposition(character).startswith("<"):
            continue  # a styled or wide form: names.py refuses those in new names
        latin = latin_alike(character) or latin_alike(character.upper())
        if latin is not None:
            table[character] = latin.lower()
    for point in range(0x80, sys.maxunicode + 1):
        character = chr(point)
        if character in table or character.casefold() != character:
            continue
        if not unicodedata.category(character).startswith("L"):
            continue
        if not unicodedata.decomposition(character).startswith("<compat>"):
            continue
        letters = unicodedata.normalize("NFKD", character)
        base = "".join(c for c in letters if not unicodedata.combining(c))
        if len(base) > 1 and base.isascii() and base.isalpha():
            table[character] = letters
    return table


def main() -> None:
    version, drawn_like = _prototypes(sys.argv[1])
    table = _table(drawn_like)
    print('"""Letters of other alphabets drawn like Latin ones, each with that Latin letter,')
    print("small, and Latin ligatures of two letters with those: made by")
    print("tools/lookalike_letters.py from Unicode's confusables.txt (UTS #39,")
    print(
        f"version {version}) and Python's character data (Unicode {unicodedata.unidata_version})."
    )
    print('Do not edit by hand: names folded with it are kept in ledgers."""')
    print()
    print("LATIN_LOOKALIKES = {")
    for character, latin in sorted(table.items()):
        escaped = (
            f"\\u{ord(character):04x}" if ord(character) <= 0xFFFF else f"\\U{ord(character):08x}"
        )
        latin = latin.encode("ascii", "backslashreplace").decode()  # a combining mark
        print(f'    "{escaped}": "{latin}",  # {unicodedata.name(character)}')
    print("}")


if __name__ == "__main__":
    main()
