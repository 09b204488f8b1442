"""SMS fitting: encoding choice, segment counts at the boundaries, typographic normalisation."""

from __future__ import annotations

import pytest

from rules.sms import fit

EXTENSION = "^{}\\[~]|€"


@pytest.mark.parametrize(
    ("case", "text", "encoding", "segments"),
    [
        ("empty: one segment", "", "GSM-7", 1),
        ("160 septets fit one", "a" * 160, "GSM-7", 1),
        ("161 septets need two", "a" * 161, "GSM-7", 2),
        ("2 x 153 septets", "a" * 306, "GSM-7", 2),
        ("2 x 153 + 1", "a" * 307, "GSM-7", 3),
        ("GSM accents are one septet", "é" * 80 + "ÄÖÑÜ£¥§¿¡" + "a" * 71, "GSM-7", 1),
        ("80 extension chars = 160 septets", "€" * 80, "GSM-7", 1),
        ("81 extension chars = 162 septets", "€" * 81, "GSM-7", 2),
        ("159 + one extension = 161", "a" * 159 + "{", "GSM-7", 2),
        ("every extension char counts 2", EXTENSION * 8 + "a" * 16, "GSM-7", 1),
        ("every extension char counts 2, +1", EXTENSION * 8 + "a" * 17, "GSM-7", 2),
        ("an escape pair never straddles parts", "a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        ("70 UCS-2 units fit one", "中" * 70, "UCS-2", 1),
        ("71 UCS-2 units need two", "中" * 71, "UCS-2", 2),
        ("2 x 67 units", "中" * 134, "UCS-2", 2),
        ("2 x 67 + 1", "中" * 135, "UCS-2", 3),
        ("one non-GSM char makes it all UCS-2", "a" * 69 + "中", "UCS-2", 1),
        ("... and 71 of them need two", "a" * 70 + "中", "UCS-2", 2),
        ("emoji are two UTF-16 units", "😀" * 35, "UCS-2", 1),
        ("36 emoji are 72 units", "😀" * 36, "UCS-2", 2),
        ("a surrogate pair never straddles parts", "中" * 66 + "😀" + "中" * 66, "UCS-2", 3),
        ("ł is not GSM-7 and has no base letter", "ł", "UCS-2", 1),
    ],
)
def test_segment_counts(case: str, text: str, encoding: str, segments: int) -> None:
    assert fit(text)[1:] == (encoding, segments), case


@pytest.mark.parametrize(
    ("text", "expected", "encoding"),
    [
        ("It’s “fine” – really…", 'It\'s "fine" - really...', "GSM-7"),
        ("Call\u00a0400\u202f800 — now", "Call 400 800 - now", "GSM-7"),
        ("‘quoted’ `tick`\tand ‚low‘", "'quoted' 'tick' and 'low'", "GSM-7"),
        ("中文“引号”不变", "中文“引号”不变", "UCS-2"),  # stays UCS-2: keep the real quotes
        ("it’s 😀", "it’s 😀", "UCS-2"),
        ("plain ASCII stays", "plain ASCII stays", "GSM-7"),
        # Accents GSM-7 lacks lose them; those it has (é, ü, ñ, Ç) stay.
        ("São João, façade, Crème brûlée", "Sao Joao, facade, Crème brulée", "GSM-7"),
        ("Ünal Çelik, ñandú", "Ünal Çelik, ñandu", "GSM-7"),
        ("Grüße, Łódź", "Grüße, Łódź", "UCS-2"),  # Ł has no base letter: nothing changes
        ("王先生 José", "王先生 José", "UCS-2"),
    ],
)
def test_typographic_punctuation_becomes_ascii_only_when_that_makes_gsm7(
    text: str, expected: str, encoding: str
) -> None:
    normalised, got, _ = fit(text)
    assert (normalised, got) == (expected, encoding)


def test_normalisation_counts_the_normalised_text() -> None:
    # 157 letters and one curly apostrophe: 158 septets once normalised.
    assert fit("a" * 157 + "’")[1:] == ("GSM-7", 1)
    # Three dots per ellipsis: 157 + 3 still fits, 158 + 3 does not.
    assert fit("a" * 157 + "…") == ("a" * 157 + "...", "GSM-7", 1)
    assert fit("a" * 158 + "…")[1:] == ("GSM-7", 2)


def test_it_keeps_ucs2_when_ascii_would_cost_more_segments() -> None:
    text = "…" * 60  # 60 UCS-2 units (1 segment) against 180 septets (2)
    assert fit(text) == (text, "UCS-2", 1)
