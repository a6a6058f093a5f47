"""SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): a small recursive-descent parser.

A filter becomes a tree of tuples; `users.py` and `groups.py` turn it into a SQLAlchemy
expression (the database filters, scoped to the org), and `matches` evaluates it on one
item of a multi-valued attribute (PATCH's `emails[type eq "work"]`). Attribute names are
compared case-insensitively (RFC 7643 §2.1), so paths come out lower-cased.

We parse ourselves rather than use scim2-filter-parser: it renders SQL text from a column
map, while we need SQLAlchemy expressions (with JSON-free column semantics per attribute)
and an evaluator over JSON items for PATCH, from one grammar.

Tree:
    ("and", left, right) | ("or", left, right) | ("not", node)
    ("cmp", path, op, value)     op in eq ne co sw ew gt ge lt le
    ("pr", path)
    ("has", path, node)          valuePath: emails[type eq "work"]
where path = (schema or None, attribute, sub-attribute or None), lower-cased.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import invalid_filter, invalid_syntax

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:user"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"
CORE_SCHEMAS = (CORE_USER, CORE_GROUP)
KNOWN_SCHEMAS = (*CORE_SCHEMAS, ENTERPRISE_USER)

COMPARE = {"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}
MAX_FILTER = 2000  # characters; a directory's filter is a few dozen
MAX_DEPTH = 30

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(\[)|(\])|("(?:[^"\\]|\\.)*")|([^\s()\[\]"]+))')
_ATTR = re.compile(r"[A-Za-z$][\w$-]*")

Path = tuple[str | None, str, str | None]


def split_path(text: str, error=invalid_filter) -> Path:
    """`name.givenName`, `urn:...:enterprise:2.0:User:manager.value` → (schema, attr, sub)."""
    schema = None
    lowered = text.lower()
    if lowered.startswith("urn:"):
        for known in KNOWN_SCHEMAS:
            if lowered.startswith(known + ":"):
                schema, text = known, text[len(known) + 1:]
                break
        else:
            head, sep, tail = text.rpartition(":")
            if not sep or not head:
                raise error(f"Not an attribute path: {text}")
            schema, text = head.lower(), tail
        if schema in CORE_SCHEMAS:
            schema = None
    parts = text.split(".")
    if len(parts) > 2 or not all(_ATTR.fullmatch(p) for p in parts):
        raise error(f"Not an attribute path: {text}")
    return schema, parts[0].lower(), parts[1].lower() if len(parts) == 2 else None


class _Parser:
    def __init__(self, text: str):
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.depth = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            if text[pos:].isspace():
                break
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise invalid_filter(f"Cannot read the filter at character {pos + 1}")
            kind = ("(", ")", "[", "]", "string", "word")[m.lastindex - 1]
            tokens.append((kind, m.group(m.lastindex)))
            pos = m.end()
        return tokens

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, word: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise invalid_filter("The filter ends too early")
        if kind and tok[0] != kind or word and tok[1].lower() != word:
            raise invalid_filter(f"Unexpected {tok[1]!r} in the filter")
        self.pos += 1
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() in words

    def parse(self):
        node = self.or_expr()
        if self.peek() is not None:
            raise invalid_filter(f"Unexpected {self.peek()[1]!r} in the filter")
        return node

    def or_expr(self):
        node = self.and_expr()
        while self.at_word("or"):
            self.take()
            node = ("or", node, self.and_expr())
        return node

    def and_expr(self):
        node = self.unary()
        while self.at_word("and"):
            self.take()
            node = ("and", node, self.unary())
        return node

    def unary(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise invalid_filter("The filter is nested too deeply")
        try:
            if self.at_word("not"):
                self.take()
                self.take("(")
                node = self.or_expr()
                self.take(")")
                return ("not", node)
            if self.peek() and self.peek()[0] == "(":
                self.take("(")
                node = self.or_expr()
                self.take(")")
                return node
            return self.attr_expr()
        finally:
            self.depth -= 1

    def attr_expr(self):
        kind, text = self.take("word")
        path = split_path(text)
        if self.peek() and self.peek()[0] == "[":
            if path[2] is not None:
                raise invalid_filter(f"Not an attribute path: {text}")
            self.take("[")
            inner = self.or_expr()
            self.take("]")
            return ("has", path, inner)
        op = self.take("word")[1].lower()
        if op == "pr":
            return ("pr", path)
        if op not in COMPARE:
            raise invalid_filter(f"Unknown operator {op!r}")
        return ("cmp", path, op, self.value())

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            try:
                value = json.loads(text)
            except ValueError:
                raise invalid_filter(f"Not a valid string: {text}") from None
            if not storable(value):  # never equal to anything stored, and the driver cannot send it
                raise invalid_filter("A NUL character or a lone surrogate is not allowed in a filter")
            return value
        if kind == "word":
            low = text.lower()
            if low in ("true", "false"):
                return low == "true"
            if low == "null":
                return None
            if re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", text):
                return json.loads(text)
        raise invalid_filter(f"Not a value: {text}")


def storable(text: str) -> bool:
    """Whether a database text column can hold `text`: PostgreSQL text holds no NUL, and a
    lone surrogate (JSON's "\\ud800") is no UTF-8 at all (both drivers fail to encode it)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_filter(text: str):
    """The tree of a filter expression; a SCIM invalidFilter error when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise invalid_filter("The filter is empty")
    if len(text) > MAX_FILTER:
        raise invalid_filter("The filter is too long")
    return _Parser(text).parse()


def parse_patch_path(text: str) -> tuple[Path, Any, str | None]:
    """A PATCH path: (attribute path, value filter tree or None, sub-attribute after the
    filter or None). `emails[type eq "work"].value` → ((None, "emails", None), tree, "value")."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_FILTER:
        raise invalid_syntax("The operation's path is not valid")
    text = text.strip()
    if "[" not in text:
        return split_path(text, invalid_path), None, None
    head, _, rest = text.partition("[")
    inner, close, tail = rest.rpartition("]")
    if not close or (tail and not tail.startswith(".")):
        raise invalid_path(f"Not a valid path: {text}")
    path = split_path(head, invalid_path)
    if path[2] is not None:
        raise invalid_path(f"Not a valid path: {text}")
    sub = tail[1:].lower() if tail else None
    if sub is not None and not _ATTR.fullmatch(sub):
        raise invalid_path(f"Not a valid path: {text}")
    return path, parse_filter(inner), sub


def invalid_path(detail: str):
    from .errors import ScimError

    return ScimError(400, detail, "invalidPath")


def _get(item: dict, name: str) -> Any:
    for key, value in item.items():
        if key.lower() == name:
            return value
    return None


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    if op == "eq":
        return actual == expected
    if op == "ne":
        return actual != expected
    if actual is None or expected is None:
        return False
    if op in ("co", "sw", "ew"):
        if not isinstance(actual, str) or not isinstance(expected, str):
            return False
        return {"co": expected in actual, "sw": actual.startswith(expected), "ew": actual.endswith(expected)}[op]
    try:
        return {"gt": actual > expected, "ge": actual >= expected, "lt": actual < expected,
                "le": actual <= expected}[op]
    except TypeError:
        return False


def size(node) -> int:
    """How many nodes a filter tree has: what `matches` costs on one value."""
    kind = node[0]
    if kind in ("and", "or"):
        return 1 + size(node[1]) + size(node[2])
    if kind == "not":
        return 1 + size(node[1])
    if kind == "has":
        return 1 + size(node[2])
    return 1


def matches(node, item: Any) -> bool:
    """Whether one value of a multi-valued attribute (a dict, e.g. one email) satisfies the
    filter in brackets; sub-attribute names are the node's attribute names."""
    kind = node[0]
    if kind == "and":
        return matches(node[1], item) and matches(node[2], item)
    if kind == "or":
        return matches(node[1], item) or matches(node[2], item)
    if kind == "not":
        return not matches(node[1], item)
    if not isinstance(item, dict):
        item = {"value": item}
    if kind == "has":
        raise invalid_filter("Nested value filters are not supported")
    _, attr, sub = node[1]
    actual = _get(item, attr)
    if sub is not None:
        actual = _get(actual, sub) if isinstance(actual, dict) else None
    if kind == "pr":
        return actual not in (None, "", [], {})
    return _compare(actual, node[2], node[3])
