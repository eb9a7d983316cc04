"""The rules a new client's name is held to: one that lists like another name (a
space too many, a character that shows nothing, quotes meant to quote it, letters of
two alphabets that look alike) would be another account. An account opened under such
a name before a rule came is used as ever, so these are asked of new names only."""

from __future__ import annotations

import re
import unicodedata

from kopilka.domain.lookalikes import LATIN_LOOKALIKES
from kopilka.domain.model import COMBINING_RUN_MAX, has_a_long_combining_run

# Characters that show nothing (Unicode's Default_Ignorable_Code_Point, and the braille
# blank): a name holding one lists like a name without it, another account. isprintable()
# already refuses the format characters among them; this catches the rest.
_SHOWS_NOTHING = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


# Quotes a shell or an editor puts around a name, straight or curled in any language's
# way (and an editor may curl one end only); not «...», which names a firm in Russian.
_OPENING_QUOTES = "\"'`\u201c\u201d\u201e\u2018\u2019\u201a\u00bb"
_CLOSING_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab"


_AS_LATIN = str.maketrans(LATIN_LOOKALIKES)
_LOOKALIKE_LETTERS = frozenset(LATIN_LOOKALIKES)


def folded_name(client: str) -> str:
    """The name as compared for likeness, kept in NFC: Unicode's canonical caseless
    match, the full case folding ("ß" as "ss", any sigma as "σ") of the name decomposed,
    with each word that could pass for a Latin one read as Latin (`_read_as_latin`:
    Cyrillic "Јое" as "joe", as "Joe" folds; "Ĳsbrand" as "ijsbrand"). Folded composed,
    "ᾼ" with an accent after it would not match "ᾳ" with that accent. Read from the case
    folding alone, names alike but for case fold alike, so one kept fold guards both
    rules. A folded name may be kept: Unicode never changes the folding of a character
    once assigned, a new name holds assigned characters only, and the lookalikes are
    kopilka's own table."""
    if client.isascii():
        return client.lower()  # the same, and far quicker
    folded = _case_folded(client)
    if not _LOOKALIKE_LETTERS.isdisjoint(folded):
        folded = _read_as_latin(folded)
    return unicodedata.normalize("NFC", folded)


def _read_as_latin(folded: str) -> str:
    """Each word of `folded` (a run of letters and their marks) whose every letter is
    drawn like a Latin one (lookalikes.py), or is one, read as the Latin word it looks
    like. A word with a letter drawn like none (Hebrew "עידו", Armenian "Ագրյան") is of
    its own alphabet, read as written: its letters drawn alike (ו and ן, գ and զ) are
    not confused by its readers."""
    read: list[str] = []
    word: list[str] = []
    for character in folded:
        if character.isalpha() or (word and unicodedata.category(character).startswith("M")):
            word.append(character)
            continue
        if word:
            read.append(_word_read(word))
            word = []
        read.append(character)
    if word:
        read.append(_word_read(word))
    return "".join(read)


def _word_read(word: list[str]) -> str:
    text = "".join(word)
    for letter in word:
        if letter.isalpha() and letter not in _LOOKALIKE_LETTERS and not _is_latin(letter):
            return text
    return text.translate(_AS_LATIN)


def _is_latin(letter: str) -> bool:
    return letter.isascii() or unicodedata.name(letter, "").startswith("LATIN")


def differ_in_case_alone(name: str, other: str) -> bool:
    """Whether two names that fold alike differ in case alone, not in lookalike letters."""
    return _case_folded(name) == _case_folded(other)


def _case_folded(name: str) -> str:
    """Unicode's full case folding of the name decomposed: what folded_name reads."""
    return unicodedata.normalize("NFD", name).casefold()


def new_name_refusal(client: str) -> str | None:
    """Why no account may be opened under `client` now, or None. " Ann" would list like
    "Ann" and be another account, as "Ann  Lee" would "Ann Lee" (a double space mistyped
    in a deposit opened a second account): not for new ones (an old account with such a
    name stays usable)."""
    if client != client.strip():
        return "may not start or end with a space"
    if len(client) > 1 and client[0] in _OPENING_QUOTES and client[-1] in _CLOSING_QUOTES:
        # '--client="John Jones"' quoted once more at the OS shell, or a command copied
        # from a text whose editor curled its quotes: a second account
        return "may not be wrapped in quotes, which were meant to quote it"
    if client in (".", ".."):
        # A URL's path reads them as folders (/v1/accounts/..): a caller or proxy that
        # tidies paths, as most do, would send the account's requests to another route.
        return "may not be '.' or '..', which a URL's path reads as folders"
    if "  " in client:
        return "may not hold two spaces in a row"
    blank = _SHOWS_NOTHING.search(client)
    if blank is not None:
        return f"may not hold a character that shows nothing (U+{ord(blank.group()):04X})"
    if not client.isascii():
        return _unicode_refusal(client)
    return None


def _unicode_refusal(client: str) -> str | None:
    if not client.isprintable():  # the rules refused all but an unassigned character
        unassigned = next(c for c in client if not c.isprintable())
        return f"may not hold a character Unicode has not assigned (U+{ord(unassigned):04X})"
    if has_a_long_combining_run(client):
        return f"may not have more than {COMBINING_RUN_MAX} combining marks in a row"
    return _mixed_alphabets_refusal(client) or _lookalike_form_refusal(client)


# Forms of a letter or digit Unicode keeps for old character sets and for mathematics,
# each drawn like the plain one ("Ｂｏｂ", "𝖡𝗈𝖻" list like "Bob"): by the tag of its
# compatibility decomposition. Forms drawn otherwise ("ª", "²", "ﬁ", halfwidth katakana,
# which Japanese banks write account names in) and fullwidth punctuation, which Japanese
# input gives ("（株）"), are let be.
_LOOKALIKE_FORMS = {
    "<wide>": "a fullwidth",
    "<font>": "a styled",
    "<initial>": "a presentation",
    "<medial>": "a presentation",
    "<final>": "a presentation",
    "<isolated>": "a presentation",
}


def _lookalike_form_refusal(client: str) -> str | None:
    for character in client:
        tag = unicodedata.decomposition(character).partition(" ")[0]
        form = _LOOKALIKE_FORMS.get(tag)
        if form is None and tag == "<compat>" and unicodedata.category(character) == "Nl":
            form = "a numeral"  # Roman numerals, drawn as Latin letters ("Ⅾavid")
        if form is None:
            continue
        plain = unicodedata.normalize("NFKC", character)
        if plain.isalnum():
            return (
                f"may not hold {character!r} (U+{ord(character):04X}), {form} form of"
                f" {plain!r} that lists like it"
            )
    return None


# Alphabets with letters alike ("A", Cyrillic "А", Greek "Α"): a word mixing them is a
# keyboard switched in the middle of a name, or a lookalike of another client's name.
_LOOKALIKE_ALPHABETS = ("LATIN", "CYRILLIC", "GREEK")
# And alphabets with letters drawn like Latin ones (Armenian "օ", Cherokee "Ꭺ", Lisu "ꓮ",
# Coptic "ⲟ"): refused beside Latin letters only (Coptic is written with Greek ones).
_LATIN_LOOKALIKE_ALPHABETS = ("ARMENIAN", "CHEROKEE", "LISU", "COPTIC")


def _words(client: str) -> list[str]:
    """Its runs of letters ("Smith-Иванова" and "J.Παπαδόπουλος" are two words each),
    a combining mark going on with its letter's word (a stress mark on a Cyrillic vowel
    stays one apart from it in NFC), and so does a number that is no digit ("²", "½"),
    as a word character does in a pattern."""
    words, word = [], ""
    for character in client:
        if _in_a_word(character, word):
            word += character
        elif word:
            words.append(word)
            word = ""
    return [*words, word] if word else words


def _in_a_word(character: str, word: str) -> bool:
    if character.isalpha() or (character.isnumeric() and not character.isdecimal()):
        return True
    return bool(word) and unicodedata.category(character).startswith("M")


def _mixed_alphabets_refusal(client: str) -> str | None:
    for word in _words(client):
        letters: dict[str, list[str]] = {}
        for letter in word:
            alphabet = unicodedata.name(letter, "").partition(" ")[0]
            if alphabet in _LOOKALIKE_ALPHABETS or alphabet in _LATIN_LOOKALIKE_ALPHABETS:
                letters.setdefault(alphabet, []).append(letter)
        if "LATIN" not in letters:  # the others mixed with one another: Greek and Coptic
            letters = {a: found for a, found in letters.items() if a in _LOOKALIKE_ALPHABETS}
        if len(letters) > 1:
            # The alphabet of fewer letters is the one slipped in: its letter is named.
            ranked = sorted(letters, key=lambda alphabet: -len(letters[alphabet]))
            most, fewest = ranked[0], ranked[-1]
            odd = letters[fewest][0]
            return (
                f"may not mix {most.title()} and {fewest.title()} letters in one word: the"
                f" {odd!r} (U+{ord(odd):04X}) in {word!r} is {fewest.title()}"
            )
    return None
