"""Numbers in text, for the "print what you quote" tests.

A quoted number is found in a notebook's printed outputs if some printed number equals it at the
precision it is quoted with: `81.86%` or `+0.34 points` match a printed 0.8186 or 0.0034 (a share
quoted in percent), `1,941,546` matches 1941546, `0.950` matches 0.9504 printed as 0.950. Integers
must be printed as such.
"""
import re
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"(?<![\w.^])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?%|\s(?:percentage\s)?points?\b)?")


def parse(token: str) -> tuple[Decimal, bool]:
    """(value, quoted_as_percent)."""
    t = token.replace("−", "-").replace(",", "").strip()
    percent = t.endswith("%") or t.endswith("points") or t.endswith("point")
    t = re.sub(r"\s?%$|\s(?:percentage\s)?points?$", "", t)
    return Decimal(t.lstrip("+")), percent


def numbers(text: str) -> list[str]:
    return [m.group(0) for m in NUMBER.finditer(text)]


SCIENTIFIC = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?e[-+]?\d+")          # 3.4e+38, as Python prints it
# 3.4 · 10^38 as pdftotext gives it: the exponent runs into the 10 ("3.4 · 1038", "8.9 · 10−16")
POWER = re.compile(r"(?<![\w.])([-+−]?\d+(?:\.\d+)?)\s*[·×⋅]\s*10([-−]?\d{1,3})(?![\d.])")


def printed_values(text: str) -> set[Decimal]:
    out = {Decimal(m.group(0)) for m in SCIENTIFIC.finditer(text)}
    for tok in numbers(SCIENTIFIC.sub(" ", text)):
        value, percent = parse(tok)
        out.add(value / 100 if percent else value)
        out.add(abs(value / 100 if percent else value))
    return out


def found(token: str, printed: set[Decimal]) -> bool:
    value, percent = parse(token)
    exponent = value.as_tuple().exponent
    candidates = {value / 100, abs(value) / 100} if percent else {value, abs(value)}
    step = Decimal(1).scaleb(exponent) / (100 if percent else 1)
    for c in candidates:
        if c in printed:
            return True
        if exponent < 0 or percent:   # a decimal (or a share) quoted at a precision: a rounding of a printed one
            if any(abs(p - c) <= step / 2 for p in printed):
                return True
    return False


def assignment_numbers() -> set[Decimal]:
    """The assignment's own numbers (its text), which anyone may type."""
    text = (ROOT.parent / "shared" / "assignment" / "hw2.md")
    for candidate in (text, ROOT / "data" / "assignment" / "hw2.md"):
        if candidate.exists():
            return printed_values(candidate.read_text())
    return set()


def notebook_output_text(path) -> str:
    """Everything a notebook's code cells show: printed streams, plain and Markdown results."""
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts += [data.get("text/plain", ""), data.get("text/markdown", "")]
    return "\n".join(parts)


# Words after which a number names something (a figure, a part, a seed) rather than quoting a result.
NAMING = re.compile(r"(?:Figure|Table|Appendix|Task|Tasks|Part|part|parts|Section|seed|seeds|Question|Q|"
                    r"Equation|trial|epoch|epochs|layer|layers)\s*$")


def unprinted(text: str, printed: set, allowed: set) -> list[str]:
    """The numbers of a text that no printed output shows (references, list numbers, page
    numbers and the assignment's own numbers aside)."""
    missing = []
    for line in text.splitlines():
        if re.fullmatch(r"\s*\d+\s*", line):           # a page number
            continue
        for m in POWER.finditer(line):                    # a power of ten: the value, at its precision
            mantissa, exponent = m.group(1).replace("−", "-"), int(m.group(2).replace("−", "-"))
            value = Decimal(mantissa).scaleb(exponent)
            step = Decimal(1).scaleb(Decimal(mantissa).as_tuple().exponent + exponent)
            if not any(abs(p - value) <= step / 2 for p in printed):
                missing.append(m.group(0))
        line = POWER.sub(" ", line)
        for m in SCIENTIFIC.finditer(line):               # 6.03e-06: the value, at its precision
            value = Decimal(m.group(0))
            step = Decimal(1).scaleb(value.as_tuple().exponent)
            if not any(abs(p - value) <= step / 2 for p in printed):
                missing.append(m.group(0))
        line = SCIENTIFIC.sub(" ", line)
        for m in NUMBER.finditer(line):
            token, before = m.group(0), line[:m.start()]
            if re.fullmatch(r"\s*", before) and line[m.end():m.end() + 1] == ".":   # "3. Training ..."
                continue
            if NAMING.search(before) and "." not in token and "%" not in token:
                continue
            value, percent = parse(token)
            if {value / 100 if percent else value, value / 100, abs(value)} & allowed:   # the assignment's own number
                continue
            if not found(token, printed):
                missing.append(token)
    return missing
