"""OSC address patterns: the syntax, agreement with a plain regex reference on
small random cases, refusals, and bounded cost on patterns that make a
backtracking matcher (python-osc's) run for minutes."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.control.osc_pattern import (
    MAX_PATTERN_CHARS,
    AddressSet,
    PatternError,
    compile_pattern,
    is_pattern,
    matches,
    valid_address,
)

ADDRESSES = [
    "/soundscape/input/danger",
    "/soundscape/input/calm",
    "/soundscape/state/mode",
    "/soundscape/layer/rain/gain_db",
    "/soundscape/layer/bed/gain_db",
    "/soundscape/status",
    "/avatar/parameters/HR",
]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("/soundscape/input/danger", ["/soundscape/input/danger"]),
        ("/soundscape/input/*", ["/soundscape/input/danger", "/soundscape/input/calm"]),
        ("/soundscape/input/?alm", ["/soundscape/input/calm"]),
        (
            "/soundscape/input/[cd]*",
            ["/soundscape/input/danger", "/soundscape/input/calm"],
        ),
        ("/soundscape/input/[!c]*", ["/soundscape/input/danger"]),
        ("/soundscape/input/[a-c]alm", ["/soundscape/input/calm"]),
        ("/soundscape/{input,state}/m*", ["/soundscape/state/mode"]),
        (
            "/soundscape/layer/*/gain_db",
            [
                "/soundscape/layer/rain/gain_db",
                "/soundscape/layer/bed/gain_db",
            ],
        ),
        (
            "//gain_db",
            [
                "/soundscape/layer/rain/gain_db",
                "/soundscape/layer/bed/gain_db",
            ],
        ),
        ("/soundscape//danger", ["/soundscape/input/danger"]),
        ("//status", ["/soundscape/status"]),
        ("//HR", ["/avatar/parameters/HR"]),
        ("/soundscape/*", ["/soundscape/status"]),  # '*' stays within a level
        ("/*", []),
        ("/soundscape/input/danger/*", []),
        ("/soundscape/input/dange", []),
        ("/soundscape/input/danger?", []),
        ("/soundscape/{,x}status", ["/soundscape/status"]),
        ("/soundscape/input/[-d]anger", ["/soundscape/input/danger"]),
    ],
)
def test_pattern_examples(pattern, expected):
    assert AddressSet(ADDRESSES).match(pattern) == expected


def test_matches_come_in_registration_order_and_duplicates_collapse():
    addresses = AddressSet(["/b/x", "/a/x", "/b/x"])
    assert addresses.addresses == ("/b/x", "/a/x")
    assert addresses.match("/*/x") == ["/b/x", "/a/x"]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("soundscape", "starts with '/'"),
        ("/a[bc", re.escape("'[' without ']'")),
        ("/a{b,c", "'{' without '}'"),
        ("/a]", "without its opening bracket"),
        ("/a}", "without its opening bracket"),
        ("/a[]", "empty character set"),
        ("/a[z-a]", "backwards"),
        ("/a[/]", "'/' inside"),
        ("/{a/b,c}", "'/' inside"),
        ("/{a*,c}", "'\\*' inside"),
        ("/a b", "not allowed"),
        ("/" + "a" * MAX_PATTERN_CHARS, f"longer than {MAX_PATTERN_CHARS}"),
    ],
)
def test_invalid_patterns_raise_pattern_error(pattern, reason):
    with pytest.raises(PatternError, match=reason):
        AddressSet(ADDRESSES).match(pattern)


def test_is_pattern_and_valid_address():
    assert not is_pattern("/soundscape/input/danger")
    assert all(is_pattern(p) for p in ["/a/*", "/a?", "/[ab]", "/{a,b}", "//a"])
    assert valid_address("/soundscape/input/danger") is None
    for bad in ["x", "/a b", "/a/*", "/a//b", "/a/", "/a#", "/" + "x" * 300]:
        assert valid_address(bad) is not None, bad
    with pytest.raises(ValueError, match="not allowed"):
        AddressSet(["/a", "/b?"])


def test_repeated_stars_compile_to_one():
    assert [t.kind for t in compile_pattern("/a/***b")] == [
        "literal",
        "star",
        "literal",
    ]


# --- agreement with a backtracking reference on small cases -------------------


def _reference(pattern: str, address: str) -> bool:
    """The same syntax through Python's re (fine for tiny inputs)."""
    parts = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("//", i):
            parts.append("(?:/.*)?(?=/)")
        elif char == "?":
            parts.append("[^/]")
        elif char == "*":
            parts.append("[^/]*")
        elif char == "[":
            close = pattern.index("]", i)
            body = pattern[i + 1 : close]
            negated = body.startswith("!")
            body = body[1:] if negated else body
            items, j = [], 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    items.append(f"{re.escape(body[j])}-{re.escape(body[j + 2])}")
                    j += 3
                else:
                    items.append(re.escape(body[j]))
                    j += 1
            parts.append(("[^/" if negated else "[") + "".join(items) + "]")
            i = close
        elif char == "{":
            close = pattern.index("}", i)
            words = pattern[i + 1 : close].split(",")
            parts.append("(?:" + "|".join(map(re.escape, words)) + ")")
            i = close
        else:
            parts.append(re.escape(char))
        i += 1
    return re.fullmatch("".join(parts), address) is not None


PIECES = [
    "/",
    "a",
    "b",
    "ab",
    "?",
    "*",
    "[ab]",
    "[!a]",
    "[a-c]",
    "{a,bb}",
    "{,b}",
    "//",
]
levels = st.lists(
    st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=4
)
addresses = levels.map(lambda names: "/" + "/".join(names))
patterns = st.lists(st.sampled_from(PIECES), max_size=8).map(lambda p: "/" + "".join(p))


@settings(max_examples=300, deadline=None)
@given(patterns, st.lists(addresses, min_size=1, max_size=6))
def test_agrees_with_the_regex_reference(pattern, address_list):
    found = AddressSet(address_list).match(pattern)
    expected = [a for a in dict.fromkeys(address_list) if _reference(pattern, a)]
    assert found == expected


@settings(max_examples=150, deadline=None)
@given(patterns, addresses)
def test_matches_agrees_with_the_reference(pattern, address):
    assert matches(pattern, address) == _reference(pattern, address)


# --- bounded cost -------------------------------------------------------------


def test_pathological_patterns_stay_cheap():
    # "/" + 14 stars + "b" (16 bytes) keeps python-osc's regex busy for minutes
    # against a 31-character address; "*a" repeats are the classic blow-up.
    many = AddressSet(
        ["/" + "a" * 30]
        + [f"/soundscape/layer/l{i}/param{j}" for i in range(20) for j in range(20)]
    )
    worst = [
        "/" + "*" * 14 + "b",
        "/*a*a*a*a*a*a*b",
        "/" + "*a" * 127 + "b",
        "/" + "//*" * 85,
        "/" + "{a,aa,aaa,aaaa}" * 15 + "b",
        "/" + "[a-z]*" * 42,
    ]
    started_s = time.perf_counter()
    for pattern in worst:
        assert len(pattern) <= MAX_PATTERN_CHARS
        assert many.match(pattern) == []
    # Microseconds each in practice; the bound is only "not backtracking".
    assert time.perf_counter() - started_s < 1.0
