"""What the report reads from each result, and the type it expects there: report/reads.json.

    python -m hw2.reads --update     # render once, recording every key the report reads (~1 min)

A result whose payload lacks a key the report reads, or holds another type there, is refused when
the render loads it, with one line naming the JSON file and the key, instead of a traceback from a
report cell. The list is not written by hand: a render with HW2_TRACE_READS=<file> records each
read (hw2.report hands out recording dicts and lists then), and `--update` keeps what it recorded.
Keys are JSON pointers, such as `/metrics/rows/[]/params` (`[]`: every item of a list, read by
iterating it; a number: the item read by its index). A type ending in `?` was read with `.get()`:
the key may be absent.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .errors import UserError
from .paths import REPORT

READS = REPORT / "reads.json"
TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
         "dict": (dict,), "null": (type(None),)}


def type_name(value) -> str:
    for name in ("bool", "int", "float", "str", "list", "dict", "null"):
        if isinstance(value, TYPES[name][-1] if name != "float" else float):
            return name
    return type(value).__name__


def expected() -> dict[str, dict[str, str]]:
    try:
        return json.loads(READS.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UserError(f"{READS}: cannot be read ({e})") from None


def split(path: str) -> list[str]:
    """A JSON pointer (RFC 6901: `/` before each key, `~1` for a `/` in a key, `~0` for `~`);
    `[]` stands for every item of a list, a number for one item."""
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def pointer(parts) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def shown(parts) -> str:
    """How a key is named in messages: metrics.rows[3].params."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) or p == "[]" else (f".{p}" if out else p)
        out = out.replace("[[]]", "[]")
    return out or "(top)"


def values_at(node, parts: list[str], where: tuple = ()):
    """Every (where, value) the pattern reaches; KeyError(where) for a missing key, TypeError
    (where, wanted, value) for a container of the wrong kind."""
    if not parts:
        yield where, node
        return
    head, rest = parts[0], parts[1:]
    if head == "[]":
        if not isinstance(node, list):
            raise TypeError(where, "list", node)
        for i, item in enumerate(node):
            yield from values_at(item, rest, where + (i,))
        return
    if isinstance(node, list) and head.isdigit():          # an item read by its index
        if int(head) >= len(node):
            raise KeyError(where + (int(head),))
        yield from values_at(node[int(head)], rest, where + (int(head),))
        return
    if not isinstance(node, dict):
        raise TypeError(where, "dict", node)
    if head not in node:
        raise KeyError(where + (head,))
    yield from values_at(node[head], rest, where + (head,))


def validate(name: str, record: dict, where_shown) -> None:
    """Raise one UserError naming the file and the key for the first read that would fail."""
    for path, kind in expected().get(name, {}).items():
        optional = kind.endswith("?")                  # read with .get(): may be absent
        kind = kind.rstrip("?")
        try:
            for where, value in values_at(record, split(path)):
                if kind != "null" and not isinstance(value, TYPES[kind]) or (
                        isinstance(value, bool) and kind in ("int", "float")):
                    raise UserError(f"{where_shown}: key '{shown(where)}' is {type_name(value)}, the report reads {kind}")
        except KeyError as e:
            if optional and len(e.args[0]) == len(split(path)):
                continue
            raise UserError(f"{where_shown}: key '{shown(e.args[0])}' missing (the report reads it)") from None
        except TypeError as e:
            where, want, value = e.args
            raise UserError(f"{where_shown}: key '{shown(where)}' is {type_name(value)}, the report reads {want}") from None


def validate_file(name: str, base=None) -> dict:
    """results/<name>.json under base holds what the report reads (a stale record may still be
    shown with ALLOW_STALE; an unreadable one never)."""
    from .results import result_path
    path = result_path(name, base)
    shown = f"results/{name}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{shown}: cannot be read ({getattr(e, 'strerror', None) or e})") from None
    except ValueError as e:
        raise UserError(f"{shown}: not valid JSON ({e})") from None
    if not isinstance(record, dict):
        raise UserError(f"{shown}: a result is a JSON object, not {type(record).__name__}")
    validate(name, record, shown)
    return record


# --- recording what a render reads ---------------------------------------------------------------
class Recorder:
    """Records each key a render reads from one result, with the type found there. An item of a
    list is recorded by its index; a read that holds for every item of its list is kept as `[]`."""

    def __init__(self, name: str, record):
        self.name, self.record, self.seen = name, record, {}

    def wrap(self, value, parts: tuple, optional: bool = False):
        if isinstance(value, dict):
            return TracedDict(value, self, parts)
        if isinstance(value, list):
            return TracedList(value, self, parts)
        kind = type_name(value) + ("?" if optional else "")
        if parts not in self.seen or (self.seen[parts].endswith("?") and not optional):
            self.seen[parts] = kind
            self.dump()
        return value

    def general(self, parts: tuple, kind: str) -> str:
        for i, seg in enumerate(parts):
            if isinstance(seg, int):
                wider = parts[:i] + ("[]",) + parts[i + 1:]
                try:
                    if all(type_name(v) == kind.rstrip("?") for _, v in values_at(self.record, [str(p) for p in wider])):
                        parts = wider
                except (KeyError, TypeError):
                    pass
        return pointer(parts)

    def dump(self):
        target = os.environ.get("HW2_TRACE_READS")
        if not target:
            return
        try:
            data = json.loads(Path(target).read_text())
        except (OSError, ValueError):
            data = {}
        mine = data.setdefault(self.name, {})
        for parts, kind in self.seen.items():
            path = self.general(parts, kind)
            # an int where a float is read elsewhere is still a number: keep the wider type
            mine[path] = "float" if {kind, mine.get(path)} == {"int", "float"} else kind
        Path(target).write_text(json.dumps(data, indent=1, sort_keys=True))


class TracedDict(dict):
    """A dict that records the keys read from it (and the types found there)."""

    def __init__(self, data, recorder, path):
        super().__init__(data)
        self._rec, self._path = recorder, path

    def __getitem__(self, key):
        return self._rec.wrap(super().__getitem__(key), self._path + (key,))

    def get(self, key, default=None):
        if key not in self:
            return default
        return self._rec.wrap(super().__getitem__(key), self._path + (key,), optional=True)

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]


class TracedList(list):
    def __init__(self, data, recorder, path):
        super().__init__(data)
        self._rec, self._path = recorder, path

    def __getitem__(self, i):
        item = super().__getitem__(i)
        if isinstance(i, slice):
            return [self._rec.wrap(x, self._path + (k,)) for k, x in zip(range(len(self))[i], item)]
        return self._rec.wrap(item, self._path + (i % len(self),))   # this very item

    def __iter__(self):
        return (self._rec.wrap(x, self._path + (i,)) for i, x in enumerate(super().__iter__()))


def update() -> int:
    """Render once with recording on and keep what the report read as report/reads.json."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "reads.json"
        env = {**os.environ, "HW2_TRACE_READS": str(trace)}
        proc = subprocess.run([sys.executable, "-m", "hw2.render", "--engine", "fallback",
                               "--allow-stale", "1", "--out-dir", str(Path(tmp) / "out")], env=env)
        if proc.returncode != 0 or not trace.exists():
            print("error: the render failed; report/reads.json left as it was", file=sys.stderr)
            return 1
        READS.write_text(json.dumps(json.loads(trace.read_text()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {READS.relative_to(REPORT.parent)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        print("usage: python -m hw2.reads --update", file=sys.stderr)
        sys.exit(2)
    sys.exit(update())
