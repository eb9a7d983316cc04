"""The table of letters drawn like Latin ones, and the fold that reads them."""

from __future__ import annotations

import string
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from kopilka.domain.lookalikes import LATIN_LOOKALIKES
from kopilka.domain.names import folded_name


def test_each_lookalike_is_a_letter_as_a_folded_name_holds_it_read_as_latin_ones() -> None:
    """Another alphabet's letter as one small Latin letter; a Latin ligature as its two."""
    for letter, latin in LATIN_LOOKALIKES.items():
        assert unicodedata.category(letter).startswith("L"), letter
        assert letter.casefold() == letter == unicodedata.normalize("NFD", letter), letter
        if unicodedata.name(letter).startswith("LATIN"):
            base = "".join(c for c in latin if not unicodedata.combining(c))
            assert len(base) == 2 and set(base) <= set(string.ascii_lowercase), (letter, latin)
        else:
            assert latin in string.ascii_lowercase, (letter, latin)


def test_the_table_holds_the_lookalikes_of_the_alphabets_names_mix_most() -> None:
    """A sample from Unicode's confusables, each alphabet's: "о" is drawn as "o"; "н" as
    no small Latin letter, but its capital "Н" as "H"."""
    sample = {"а": "a", "о": "o", "ј": "j", "н": "h", "р": "p", "ο": "o", "ν": "v"}
    assert {letter: LATIN_LOOKALIKES[letter] for letter in sample} == sample
    assert "и" not in LATIN_LOOKALIKES  # drawn like no Latin letter, small or capital


# Letters of the alphabets whose case is plain: Latin, Greek, Cyrillic.
_LETTERS = st.characters(
    categories=["Lu", "Ll"],
    include_characters=" ",
    max_codepoint=0x45F,
).filter(lambda c: c == " " or unicodedata.name(c).split()[0] in ("LATIN", "GREEK", "CYRILLIC"))


@given(st.text(_LETTERS, min_size=1, max_size=12))
def test_names_alike_but_for_case_fold_alike_with_the_lookalikes_read(name: str) -> None:
    """One kept fold guards both rules only if every case of a name folds alike."""
    if name.upper().casefold() == name.casefold() == name.lower().casefold():
        assert folded_name(name) == folded_name(name.upper()) == folded_name(name.lower())
