"""OSC address patterns, matched against a set of addresses at bounded cost.

The syntax of OSC 1.0 plus the path wildcard of OSC 1.1:

====================  =====================================================
``?``                 any one character but ``/``
``*``                 any run of characters without ``/`` (empty too)
``[a-z_]``            one character from the set; ``[!0-9]`` one not in it
``{left,right}``      one of the words (plain text, no ``/``)
``//``                any number of whole levels: ``//gain`` matches
                      ``/gain``, ``/bed/gain``, ``/bed/rain/gain``
====================  =====================================================

Regular expressions can backtrack (python-osc's takes over a second on some
16-byte patterns); this never does. A pattern is compiled to tokens and run as
a bit-parallel NFA over all the addresses at once: the set of reachable
positions in every address is one Python integer, and each token is a few
integer operations on it (``*`` and ``//`` a logarithmic number). Matching a
pattern of P characters against addresses of N characters in total costs
O(P * log N) big-integer operations of N bits, whatever the pattern says, and
patterns longer than ``MAX_PATTERN_CHARS`` are refused.

    >>> addresses = AddressSet(["/bed/gain", "/rain/gain", "/rain/density"])
    >>> addresses.match("/*/gain")
    ['/bed/gain', '/rain/gain']
    >>> addresses.match("//density")
    ['/rain/density']

Thread: any. An :class:`AddressSet` is immutable once built, so the OSC receive
threads share one and a registration builds a new one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "MAX_PATTERN_CHARS",
    "PATTERN_CHARS",
    "AddressSet",
    "PatternError",
    "compile_pattern",
    "is_pattern",
    "matches",
    "valid_address",
]

MAX_PATTERN_CHARS = 256
# Characters that make an address a pattern (with "//"); OSC forbids them in the
# addresses of methods.
PATTERN_CHARS = frozenset("*?[]{}")
_FORBIDDEN_IN_ADDRESS = frozenset(" #*,?[]{}\x00")
_SEPARATOR = "\x00"  # between addresses in the joined text; no token matches it


class PatternError(ValueError):
    """A pattern that cannot be matched: why, and where (0-based character)."""

    def __init__(self, reason: str, pattern: str, position: int | None = None) -> None:
        self.reason = reason
        self.pattern = pattern
        self.position = position
        where = "" if position is None else f" at character {position}"
        super().__init__(f"OSC pattern {pattern[:80]!r}{where}: {reason}")


class _Token(NamedTuple):
    kind: str  # "literal", "one", "set", "star", "words", "levels"
    words: tuple[str, ...] = ()  # the literal (one) or the alternatives
    ranges: tuple[tuple[str, str], ...] = ()  # for "set"
    negated: bool = False


def is_pattern(address: str) -> bool:
    """Whether ``address`` holds any wildcard (and so needs matching)."""
    return "//" in address or not PATTERN_CHARS.isdisjoint(address)


def valid_address(address: str) -> str | None:
    """Why ``address`` cannot name a method, or ``None`` if it can.

    >>> valid_address("/soundscape/input/danger") is None
    True
    >>> valid_address("/a b")
    "character ' ' is not allowed in an OSC address"
    """
    if not address.startswith("/"):
        return "an OSC address starts with '/'"
    if len(address) > MAX_PATTERN_CHARS:
        return f"longer than {MAX_PATTERN_CHARS} characters"
    bad = next((c for c in address if c in _FORBIDDEN_IN_ADDRESS), None)
    if bad is not None:
        return f"character {bad!r} is not allowed in an OSC address"
    if "//" in address or (address.endswith("/") and address != "/"):
        return "empty level ('//' or a trailing '/')"
    return None


def _parse_set(pattern: str, at: int) -> tuple[_Token, int]:
    close = pattern.find("]", at + 1)
    if close < 0:
        raise PatternError("'[' without ']'", pattern, at)
    body = pattern[at + 1 : close]
    negated = body.startswith("!")
    if negated:
        body = body[1:]
    if not body:
        raise PatternError("empty character set", pattern, at)
    if "/" in body:
        raise PatternError("'/' inside [...]", pattern, at)
    ranges = []
    i = 0
    while i < len(body):
        # "a-z" is a range; a '-' first or last stands for itself.
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low > high:
                raise PatternError(f"range {low}-{high} is backwards", pattern, at)
            ranges.append((low, high))
            i += 3
        else:
            ranges.append((body[i], body[i]))
            i += 1
    return _Token("set", ranges=tuple(ranges), negated=negated), close + 1


def _parse_words(pattern: str, at: int) -> tuple[_Token, int]:
    close = pattern.find("}", at + 1)
    if close < 0:
        raise PatternError("'{' without '}'", pattern, at)
    body = pattern[at + 1 : close]
    bad = next((c for c in body if c in "/{[]*?"), None)
    if bad is not None:
        raise PatternError(f"{bad!r} inside {{...}}", pattern, at)
    return _Token("words", words=tuple(dict.fromkeys(body.split(",")))), close + 1


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> tuple[_Token, ...]:
    """The tokens of ``pattern``; raises :class:`PatternError` if it is invalid
    or longer than ``MAX_PATTERN_CHARS``. Cached: senders repeat patterns."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"longer than {MAX_PATTERN_CHARS} characters", pattern)
    if not pattern.startswith("/"):
        raise PatternError("a pattern starts with '/'", pattern, 0)
    tokens: list[_Token] = []
    literal: list[str] = []

    def push(token: _Token) -> None:
        if literal:
            tokens.append(_Token("literal", ("".join(literal),)))
            literal.clear()
        # "**" is "*": dropping repeats keeps the token count honest.
        if not (token.kind == "star" and tokens and tokens[-1].kind == "star"):
            tokens.append(token)

    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "/" and pattern.startswith("//", i):
            push(_Token("levels"))
            i += 1  # the second '/' begins the next level
            continue
        if char == "?":
            push(_Token("one"))
        elif char == "*":
            push(_Token("star"))
        elif char == "[":
            token, i = _parse_set(pattern, i)
            push(token)
            continue
        elif char == "{":
            token, i = _parse_words(pattern, i)
            push(token)
            continue
        elif char in "]}":
            raise PatternError(f"{char!r} without its opening bracket", pattern, i)
        elif char in " #,\x00":
            raise PatternError(f"character {char!r} is not allowed", pattern, i)
        else:
            literal.append(char)
        i += 1
    if literal:
        tokens.append(_Token("literal", ("".join(literal),)))
    return tuple(tokens)


class AddressSet:
    """Addresses to match patterns against, all at once.

    Build it once per set of registered addresses (cost linear in their total
    length); :meth:`match` is then cheap and bounded for any pattern.
    """

    def __init__(self, addresses: Iterable[str]) -> None:
        self.addresses = tuple(dict.fromkeys(addresses))
        for address in self.addresses:
            reason = valid_address(address)
            if reason is not None:
                raise ValueError(f"OSC address {address!r}: {reason}")
        self._order = {address: i for i, address in enumerate(self.addresses)}
        text = "".join(a + _SEPARATOR for a in self.addresses)
        self._starts = 0
        self._ends: dict[int, str] = {}
        position = 0
        for address in self.addresses:
            self._starts |= 1 << position
            position += len(address)
            self._ends[position] = address
            position += 1
        self._accept = sum(1 << p for p in self._ends)
        self._chars: dict[str, int] = {}
        for index, char in enumerate(text):
            self._chars[char] = self._chars.get(char, 0) | (1 << index)
        separators = self._chars.get(_SEPARATOR, 0)
        slashes = self._chars.get("/", 0)
        everything = (1 << len(text)) - 1
        self._slashes = slashes
        self._in_level = everything & ~(slashes | separators)  # what '*' may eat
        self._in_address = everything & ~separators  # what '//' may eat
        longest = max((len(a) for a in self.addresses), default=0)
        self._level_runs = self._runs(self._in_level, longest)
        self._address_runs = self._runs(self._in_address, longest)

    @staticmethod
    def _runs(mask: int, longest: int) -> list[tuple[int, int]]:
        """(k, bits i where characters i..i+k-1 are all in ``mask``), k = 1, 2,
        4, ... up to the longest address: the steps of a logarithmic fill."""
        runs = []
        k, run = 1, mask
        while k <= longest:
            runs.append((k, run))
            run &= run >> k
            k *= 2
        return runs

    @staticmethod
    def _fill(reached: int, runs: list[tuple[int, int]]) -> int:
        # Every extension length is a sum of distinct powers of two taken in
        # increasing order, and run k checks the k characters it jumps over.
        for k, run in runs:
            reached |= (reached & run) << k
        return reached

    def _literal(self, reached: int, word: str) -> int:
        chars = self._chars
        for char in word:
            reached = (reached & chars.get(char, 0)) << 1
            if not reached:
                return 0
        return reached

    def _set_mask(self, token: _Token) -> int:
        mask = 0
        for char, bits in self._chars.items():
            if char == "/" or char == _SEPARATOR:
                continue
            inside = any(low <= char <= high for low, high in token.ranges)
            if inside != token.negated:
                mask |= bits
        return mask

    def match(self, pattern: str) -> list[str]:
        """The addresses ``pattern`` matches, in the order they were given.

        Raises :class:`PatternError` for an invalid or over-long pattern.
        """
        reached = self._starts
        for token in compile_pattern(pattern):
            kind = token.kind
            if kind == "literal":
                reached = self._literal(reached, token.words[0])
            elif kind == "star":
                reached = self._fill(reached, self._level_runs)
            elif kind == "one":
                reached = (reached & self._in_level) << 1
            elif kind == "set":
                reached = (reached & self._set_mask(token)) << 1
            elif kind == "words":
                reached = functools.reduce(
                    int.__or__, (self._literal(reached, w) for w in token.words), 0
                )
            else:  # "levels": from a '/' on to any later '/' of the same address,
                # where the rest of the pattern (which starts with '/') goes on.
                filled = self._fill(reached & self._slashes, self._address_runs)
                reached = filled & self._slashes
            if not reached:
                return []
        hits = reached & self._accept
        found = []
        while hits:
            low = hits & -hits
            found.append(self._ends[low.bit_length() - 1])
            hits ^= low
        found.sort(key=self._order.__getitem__)
        return found


def matches(pattern: str, address: str) -> bool:
    """Whether ``pattern`` matches ``address`` (builds a one-address set).

    >>> matches("/bed/{gain,pan}", "/bed/pan"), matches("/b?d/*", "/bed/a/b")
    (True, False)
    """
    return bool(AddressSet([address]).match(pattern))
