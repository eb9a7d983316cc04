"""Letters of other alphabets drawn like Latin ones, each with that Latin letter,
small, and Latin ligatures of two letters with those: made by
tools/lookalike_letters.py from Unicode's confusables.txt (UTS #39,
version 13.0.0) and Python's character data (Unicode 14.0.0).
Do not edit by hand: names folded with it are kept in ledgers."""

LATIN_LOOKALIKES = {
    "\u0133": "ij",  # LATIN SMALL LIGATURE IJ
    "\u01c6": "dz\u030c",  # LATIN SMALL LETTER DZ WITH CARON
    "\u01c9": "lj",  # LATIN SMALL LETTER LJ
    "\u01cc": "nj",  # LATIN SMALL LETTER NJ
    "\u01f3": "dz",  # LATIN SMALL LETTER DZ
    "\u03b1": "a",  # GREEK SMALL LETTER ALPHA
    "\u03b2": "b",  # GREEK SMALL LETTER BETA
    "\u03b3": "y",  # GREEK SMALL LETTER GAMMA
    "\u03b5": "e",  # GREEK SMALL LETTER EPSILON
    "\u03b6": "z",  # GREEK SMALL LETTER ZETA
    "\u03b7": "h",  # GREEK SMALL LETTER ETA
    "\u03b9": "i",  # GREEK SMALL LETTER IOTA
    "\u03ba": "k",  # GREEK SMALL LETTER KAPPA
    "\u03bc": "m",  # GREEK SMALL LETTER MU
    "\u03bd": "v",  # GREEK SMALL LETTER NU
    "\u03bf": "o",  # GREEK SMALL LETTER OMICRON
    "\u03c1": "p",  # GREEK SMALL LETTER RHO
    "\u03c3": "o",  # GREEK SMALL LETTER SIGMA
    "\u03c4": "t",  # GREEK SMALL LETTER TAU
    "\u03c5": "u",  # GREEK SMALL LETTER UPSILON
    "\u03c7": "x",  # GREEK SMALL LETTER CHI
    "\u03dd": "f",  # GREEK SMALL LETTER DIGAMMA
    "\u03f3": "j",  # GREEK LETTER YOT
    "\u03fb": "m",  # GREEK SMALL LETTER SAN
    "\u0430": "a",  # CYRILLIC SMALL LETTER A
    "\u0432": "b",  # CYRILLIC SMALL LETTER VE
    "\u0433": "r",  # CYRILLIC SMALL LETTER GHE
    "\u0435": "e",  # CYRILLIC SMALL LETTER IE
    "\u043a": "k",  # CYRILLIC SMALL LETTER KA
    "\u043c": "m",  # CYRILLIC SMALL LETTER EM
    "\u043d": "h",  # CYRILLIC SMALL LETTER EN
    "\u043e": "o",  # CYRILLIC SMALL LETTER O
    "\u0440": "p",  # CYRILLIC SMALL LETTER ER
    "\u0441": "c",  # CYRILLIC SMALL LETTER ES
    "\u0442": "t",  # CYRILLIC SMALL LETTER TE
    "\u0443": "y",  # CYRILLIC SMALL LETTER U
    "\u0445": "x",  # CYRILLIC SMALL LETTER HA
    "\u044c": "b",  # CYRILLIC SMALL LETTER SOFT SIGN
    "\u0455": "s",  # CYRILLIC SMALL LETTER DZE
    "\u0456": "i",  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "\u0458": "j",  # CYRILLIC SMALL LETTER JE
    "\u0461": "w",  # CYRILLIC SMALL LETTER OMEGA
    "\u0475": "v",  # CYRILLIC SMALL LETTER IZHITSA
    "\u04af": "y",  # CYRILLIC SMALL LETTER STRAIGHT U
    "\u04bb": "h",  # CYRILLIC SMALL LETTER SHHA
    "\u04bd": "e",  # CYRILLIC SMALL LETTER ABKHASIAN CHE
    "\u04cf": "i",  # CYRILLIC SMALL LETTER PALOCHKA
    "\u0501": "d",  # CYRILLIC SMALL LETTER KOMI DE
    "\u050d": "g",  # CYRILLIC SMALL LETTER KOMI SJE
    "\u051b": "q",  # CYRILLIC SMALL LETTER QA
    "\u051d": "w",  # CYRILLIC SMALL LETTER WE
    "\u0561": "w",  # ARMENIAN SMALL LETTER AYB
    "\u0563": "q",  # ARMENIAN SMALL LETTER GIM
    "\u0566": "q",  # ARMENIAN SMALL LETTER ZA
    "\u0570": "h",  # ARMENIAN SMALL LETTER HO
    "\u0578": "n",  # ARMENIAN SMALL LETTER VO
    "\u057c": "n",  # ARMENIAN SMALL LETTER RA
    "\u057d": "u",  # ARMENIAN SMALL LETTER SEH
    "\u057f": "s",  # ARMENIAN SMALL LETTER TIWN
    "\u0581": "g",  # ARMENIAN SMALL LETTER CO
    "\u0584": "f",  # ARMENIAN SMALL LETTER KEH
    "\u0585": "o",  # ARMENIAN SMALL LETTER OH
    "\u05d5": "l",  # HEBREW LETTER VAV
    "\u05d8": "v",  # HEBREW LETTER TET
    "\u05df": "l",  # HEBREW LETTER FINAL NUN
    "\u05e1": "o",  # HEBREW LETTER SAMEKH
    "\u0627": "l",  # ARABIC LETTER ALEF
    "\u0647": "o",  # ARABIC LETTER HEH
    "\u06be": "o",  # ARABIC LETTER HEH DOACHASHMEE
    "\u06c1": "o",  # ARABIC LETTER HEH GOAL
    "\u06d5": "o",  # ARABIC LETTER AE
    "\u07ca": "l",  # NKO LETTER A
    "\u0b20": "o",  # ORIYA LETTER TTHA
    "\u0d20": "o",  # MALAYALAM LETTER TTHA
    "\u101d": "o",  # MYANMAR LETTER WA
    "\u10e7": "y",  # GEORGIAN LETTER QAR
    "\u10ff": "o",  # GEORGIAN LETTER LABIAL SIGN
    "\u1200": "u",  # ETHIOPIC SYLLABLE HA
    "\u12d0": "o",  # ETHIOPIC SYLLABLE PHARYNGEAL A
    "\u13a0": "d",  # CHEROKEE LETTER A
    "\u13a1": "r",  # CHEROKEE LETTER E
    "\u13a2": "t",  # CHEROKEE LETTER I
    "\u13a5": "i",  # CHEROKEE LETTER V
    "\u13a9": "y",  # CHEROKEE LETTER GI
    "\u13aa": "a",  # CHEROKEE LETTER GO
    "\u13ab": "j",  # CHEROKEE LETTER GU
    "\u13ac": "e",  # CHEROKEE LETTER GV
    "\u13b3": "w",  # CHEROKEE LETTER LA
    "\u13b7": "m",  # CHEROKEE LETTER LU
    "\u13bb": "h",  # CHEROKEE LETTER MI
    "\u13bd": "y",  # CHEROKEE LETTER MU
    "\u13c0": "g",  # CHEROKEE LETTER NAH
    "\u13c2": "h",  # CHEROKEE LETTER NI
    "\u13c3": "z",  # CHEROKEE LETTER NO
    "\u13cf": "b",  # CHEROKEE LETTER SI
    "\u13d2": "r",  # CHEROKEE LETTER SV
    "\u13d4": "w",  # CHEROKEE LETTER TA
    "\u13d5": "s",  # CHEROKEE LETTER DE
    "\u13d9": "v",  # CHEROKEE LETTER DO
    "\u13da": "s",  # CHEROKEE LETTER DU
    "\u13de": "l",  # CHEROKEE LETTER TLE
    "\u13df": "c",  # CHEROKEE LETTER TLI
    "\u13e2": "p",  # CHEROKEE LETTER TLV
    "\u13e6": "k",  # CHEROKEE LETTER TSO
    "\u13e7": "d",  # CHEROKEE LETTER TSU
    "\u13f3": "g",  # CHEROKEE LETTER YU
    "\u13f4": "b",  # CHEROKEE LETTER YV
    "\u142f": "v",  # CANADIAN SYLLABICS PE
    "\u144c": "u",  # CANADIAN SYLLABICS TE
    "\u146d": "p",  # CANADIAN SYLLABICS KI
    "\u146f": "d",  # CANADIAN SYLLABICS KO
    "\u1472": "b",  # CANADIAN SYLLABICS KA
    "\u148d": "j",  # CANADIAN SYLLABICS CO
    "\u14aa": "l",  # CANADIAN SYLLABICS MA
    "\u1541": "x",  # CANADIAN SYLLABICS SAYISI YI
    "\u157c": "h",  # CANADIAN SYLLABICS NUNAVUT H
    "\u157d": "x",  # CANADIAN SYLLABICS HK
    "\u1587": "r",  # CANADIAN SYLLABICS TLHI
    "\u15af": "b",  # CANADIAN SYLLABICS AIVILIK B
    "\u15b4": "f",  # CANADIAN SYLLABICS BLACKFOOT WE
    "\u15c5": "a",  # CANADIAN SYLLABICS CARRIER GHO
    "\u15de": "d",  # CANADIAN SYLLABICS CARRIER THE
    "\u15ea": "d",  # CANADIAN SYLLABICS CARRIER PE
    "\u15f0": "m",  # CANADIAN SYLLABICS CARRIER GO
    "\u15f7": "b",  # CANADIAN SYLLABICS CARRIER KHE
    "\u16b7": "x",  # RUNIC LETTER GEBO GYFU G
    "\u16c1": "l",  # RUNIC LETTER ISAZ IS ISS I
    "\u16d5": "k",  # RUNIC LETTER OPEN-P
    "\u16d6": "m",  # RUNIC LETTER EHWAZ EH E
    "\u1d26": "r",  # GREEK LETTER SMALL CAPITAL GAMMA
    "\u2c85": "r",  # COPTIC SMALL LETTER GAMMA
    "\u2c8f": "h",  # COPTIC SMALL LETTER HATE
    "\u2c93": "i",  # COPTIC SMALL LETTER IAUDA
    "\u2c95": "k",  # COPTIC SMALL LETTER KAPA
    "\u2c99": "m",  # COPTIC SMALL LETTER MI
    "\u2c9b": "n",  # COPTIC SMALL LETTER NI
    "\u2c9f": "o",  # COPTIC SMALL LETTER O
    "\u2ca3": "p",  # COPTIC SMALL LETTER RO
    "\u2ca5": "c",  # COPTIC SMALL LETTER SIMA
    "\u2ca7": "t",  # COPTIC SMALL LETTER TAU
    "\u2ca9": "y",  # COPTIC SMALL LETTER UA
    "\u2cad": "x",  # COPTIC SMALL LETTER KHI
    "\u2cd1": "l",  # COPTIC SMALL LETTER L-SHAPED HA
    "\u2d38": "v",  # TIFINAGH LETTER YADH
    "\u2d39": "e",  # TIFINAGH LETTER YADD
    "\u2d4f": "l",  # TIFINAGH LETTER YAN
    "\u2d54": "o",  # TIFINAGH LETTER YAR
    "\u2d55": "q",  # TIFINAGH LETTER YARR
    "\u2d5d": "x",  # TIFINAGH LETTER YATH
    "\ua4d0": "b",  # LISU LETTER BA
    "\ua4d1": "p",  # LISU LETTER PA
    "\ua4d2": "d",  # LISU LETTER PHA
    "\ua4d3": "d",  # LISU LETTER DA
    "\ua4d4": "t",  # LISU LETTER TA
    "\ua4d6": "g",  # LISU LETTER GA
    "\ua4d7": "k",  # LISU LETTER KA
    "\ua4d9": "j",  # LISU LETTER JA
    "\ua4da": "c",  # LISU LETTER CA
    "\ua4dc": "z",  # LISU LETTER DZA
    "\ua4dd": "f",  # LISU LETTER TSA
    "\ua4df": "m",  # LISU LETTER MA
    "\ua4e0": "n",  # LISU LETTER NA
    "\ua4e1": "l",  # LISU LETTER LA
    "\ua4e2": "s",  # LISU LETTER SA
    "\ua4e3": "r",  # LISU LETTER ZHA
    "\ua4e6": "v",  # LISU LETTER HA
    "\ua4e7": "h",  # LISU LETTER XA
    "\ua4ea": "w",  # LISU LETTER WA
    "\ua4eb": "x",  # LISU LETTER SHA
    "\ua4ec": "y",  # LISU LETTER YA
    "\ua4ee": "a",  # LISU LETTER A
    "\ua4f0": "e",  # LISU LETTER E
    "\ua4f2": "l",  # LISU LETTER I
    "\ua4f3": "o",  # LISU LETTER O
    "\ua4f4": "u",  # LISU LETTER U
    "\ua647": "i",  # CYRILLIC SMALL LETTER IOTA
    "\ua6df": "v",  # BAMUM LETTER KO
    "\U00010282": "b",  # LYCIAN LETTER B
    "\U00010286": "e",  # LYCIAN LETTER I
    "\U00010287": "f",  # LYCIAN LETTER W
    "\U0001028a": "l",  # LYCIAN LETTER J
    "\U00010290": "x",  # LYCIAN LETTER MM
    "\U00010292": "o",  # LYCIAN LETTER U
    "\U00010295": "p",  # LYCIAN LETTER R
    "\U00010296": "s",  # LYCIAN LETTER S
    "\U00010297": "t",  # LYCIAN LETTER T
    "\U000102a0": "a",  # CARIAN LETTER A
    "\U000102a1": "b",  # CARIAN LETTER P2
    "\U000102a2": "c",  # CARIAN LETTER D
    "\U000102a5": "f",  # CARIAN LETTER R
    "\U000102ab": "o",  # CARIAN LETTER O
    "\U000102b0": "m",  # CARIAN LETTER S
    "\U000102b1": "t",  # CARIAN LETTER C-18
    "\U000102b2": "y",  # CARIAN LETTER U
    "\U000102b4": "x",  # CARIAN LETTER X
    "\U000102cf": "h",  # CARIAN LETTER E2
    "\U00010301": "b",  # OLD ITALIC LETTER BE
    "\U00010302": "c",  # OLD ITALIC LETTER KE
    "\U00010309": "l",  # OLD ITALIC LETTER I
    "\U00010311": "m",  # OLD ITALIC LETTER SHE
    "\U00010315": "t",  # OLD ITALIC LETTER TE
    "\U00010317": "x",  # OLD ITALIC LETTER EKS
    "\U0001042c": "o",  # DESERET SMALL LETTER LONG O
    "\U0001043d": "c",  # DESERET SMALL LETTER CHEE
    "\U00010443": "l",  # DESERET SMALL LETTER ETH
    "\U00010448": "s",  # DESERET SMALL LETTER ZHEE
    "\U000104dc": "r",  # OSAGE SMALL LETTER BRA
    "\U000104ea": "o",  # OSAGE SMALL LETTER O
    "\U000104f6": "u",  # OSAGE SMALL LETTER U
    "\U00010513": "n",  # ELBASAN LETTER NE
    "\U00010516": "o",  # ELBASAN LETTER O
    "\U00010518": "k",  # ELBASAN LETTER QE
    "\U0001051c": "c",  # ELBASAN LETTER SHE
    "\U0001051d": "v",  # ELBASAN LETTER TE
    "\U00010525": "f",  # ELBASAN LETTER GHE
    "\U00010526": "l",  # ELBASAN LETTER GHAMMA
    "\U00010527": "x",  # ELBASAN LETTER KHE
    "\U00011700": "m",  # AHOM LETTER KA
    "\U00011706": "v",  # AHOM LETTER PA
    "\U0001170a": "w",  # AHOM LETTER JA
    "\U0001170e": "w",  # AHOM LETTER LA
    "\U0001170f": "w",  # AHOM LETTER SA
    "\U000118c0": "v",  # WARANG CITI SMALL LETTER NGAA
    "\U000118c1": "s",  # WARANG CITI SMALL LETTER A
    "\U000118c2": "f",  # WARANG CITI SMALL LETTER WI
    "\U000118c3": "i",  # WARANG CITI SMALL LETTER YU
    "\U000118c4": "z",  # WARANG CITI SMALL LETTER YA
    "\U000118c6": "e",  # WARANG CITI SMALL LETTER II
    "\U000118c8": "o",  # WARANG CITI SMALL LETTER E
    "\U000118c9": "z",  # WARANG CITI SMALL LETTER O
    "\U000118ce": "e",  # WARANG CITI SMALL LETTER YUJ
    "\U000118d2": "l",  # WARANG CITI SMALL LETTER TTE
    "\U000118d5": "o",  # WARANG CITI SMALL LETTER AT
    "\U000118d7": "o",  # WARANG CITI SMALL LETTER BU
    "\U000118d8": "u",  # WARANG CITI SMALL LETTER PU
    "\U000118dc": "y",  # WARANG CITI SMALL LETTER HAR
    "\U00016f08": "v",  # MIAO LETTER VA
    "\U00016f0a": "t",  # MIAO LETTER TA
    "\U00016f16": "l",  # MIAO LETTER LA
    "\U00016f28": "l",  # MIAO LETTER GHA
    "\U00016f35": "r",  # MIAO LETTER ZHA
    "\U00016f3a": "s",  # MIAO LETTER SA
    "\U00016f40": "a",  # MIAO LETTER ZZYA
    "\U00016f42": "u",  # MIAO LETTER WA
    "\U00016f43": "y",  # MIAO LETTER AH
}
