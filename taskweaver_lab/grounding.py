"""Grounded answers: every figure in a final answer must come from code that ran, or from the user.

Pure functions over the round's steps. ``check(text, history, round)`` finds each figure of an answer
in the round's execution outputs (allowing rounding, thousands separators and percentages) or in the
user's own messages, and names the generated cell that printed it. The Planner gets one corrective
re-ask for figures nobody computed (planner.py); what still has none is marked "not computed" in the
answer (``mark``).

What counts as a figure: any number with a decimal point, or with two or more digits. Single-digit
integers are left out on purpose: they are mostly list markers, step numbers and counts in prose
("the 3 regions"), and flagging them would bury the real findings.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from .steps import Execution, FigureSource, Step, UserMessage

# 1,234.5 / -0.25 / 12% / 3e-05 ; not part of a word (x86, col2)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?%?(?![\w])")


@dataclass(frozen=True)
class Grounding:
    sources: tuple[FigureSource, ...] = ()
    ungrounded: tuple[str, ...] = ()


def figures(text: str) -> list[str]:
    """The figures an answer states, in order, each once."""
    found: list[str] = []
    for match in _NUMBER.finditer(text):
        token = match.group(0)
        digits = re.sub(r"\D", "", token.split("e")[0].split("E")[0])
        if ("." in token or len(digits.lstrip("0") or "0") >= 2) and token not in found:
            found.append(token)
    return found


def _value(token: str) -> tuple[float, int, bool]:
    """(value, decimals shown, is a percentage) of a figure as written."""
    percent = token.endswith("%")
    plain = token.rstrip("%").replace(",", "")
    mantissa = re.split(r"[eE]", plain)[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return float(plain), decimals, percent


def _numbers(text: str) -> list[float]:
    values: list[float] = []
    for match in _NUMBER.finditer(text):
        try:
            values.append(_value(match.group(0))[0])
        except ValueError:
            continue
    return values


def _matches(figure: str, value: float) -> bool:
    """Does ``value`` (as printed by code) show as ``figure`` once rounded or truncated to its decimals?"""
    shown, decimals, percent = _value(figure)
    candidates = (value, value * 100) if percent else (value,)
    for candidate in candidates:
        if not math.isfinite(candidate):
            continue
        tolerance = 0.5 * 10 ** -decimals + 1e-9 * max(1.0, abs(candidate))
        if abs(candidate - shown) <= tolerance or abs(math.trunc(candidate * 10 ** decimals) / 10 ** decimals - shown) < 1e-9:
            return True
    return False


def output_text(execution: Execution) -> str:
    """Everything a cell showed as text: printed streams, results, tables (html is left out: same data)."""
    parts = [execution.summary]
    for output in execution.outputs:
        if output.get("output_type") == "stream":
            parts.append(str(output.get("text", "")))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def _sources(history: Sequence[Step], round_number: int) -> Iterable[tuple[FigureSource, list[float]]]:
    for step in history:
        if isinstance(step, Execution) and step.ok and step.code and step.round == round_number:
            yield FigureSource("", "cell", step.round, step.step, step.attempt, step.execution_count), _numbers(output_text(step))
        elif isinstance(step, UserMessage):
            yield FigureSource("", "user", step.round), _numbers(step.text)


def check(text: str, history: Sequence[Step], round_number: int) -> Grounding:
    """Which figures of ``text`` some execution of the round printed (or the user wrote), and which none did."""
    pool = list(_sources(history, round_number))
    found: list[FigureSource] = []
    missing: list[str] = []
    for figure in figures(text):
        source = next((s for s, values in reversed(pool) if any(_matches(figure, v) for v in values)), None)
        if source is None:
            missing.append(figure)
        else:
            found.append(FigureSource(figure, source.origin, source.round, source.step, source.attempt, source.execution_count))
    return Grounding(tuple(found), tuple(missing))


def problem(text: str, history: Sequence[Step], round_number: int) -> str:
    """The corrective re-ask for an answer with figures no code computed, or ""."""
    missing = check(text, history, round_number).ungrounded
    if not missing:
        return ""
    listed = ", ".join(missing[:8])
    return (f"Your answer states {listed}, which no code in this round printed. State only figures that appear "
            "in the execution reports above (copy them exactly), or send a step to the CodeInterpreter to compute them.")


def mark(text: str, ungrounded: Sequence[str]) -> str:
    """The answer with each figure nobody computed marked as such, where the reader sees it."""
    for figure in ungrounded:
        text = re.sub(rf"(?<![\w.]){re.escape(figure)}(?![\w])", f"{figure} (not computed)", text, count=1)
    return text


# --- the output format the user asked for -------------------------------------------------------------
# "@name[value]" fields (a common machine-readable answer format, e.g. benchmark and report templates).
_FIELD = re.compile(r"@([A-Za-z_]\w*)\[")
_PRINTED_FIELD = re.compile(r"@([A-Za-z_]\w*)\[([^\]\n]*)\]")


def field_names(text: str) -> list[str]:
    """The ``@name[...]`` fields ``text`` names, in order, each once."""
    return list(dict.fromkeys(_FIELD.findall(text)))


def requested_fields(history: Sequence[Step], round_number: int) -> list[str]:
    """The ``@name[...]`` fields the user's message of this round asks for, in order."""
    return field_names(" ".join(s.text for s in history if isinstance(s, UserMessage) and s.round == round_number))


def missing_fields(text: str, history: Sequence[Step], round_number: int) -> list[str]:
    present = set(_FIELD.findall(text))
    return [name for name in requested_fields(history, round_number) if name not in present]


def format_problem(text: str, history: Sequence[Step], round_number: int) -> str:
    """The corrective re-ask for an answer that drops the format the user asked for, or ""."""
    missing = missing_fields(text, history, round_number)
    if not missing:
        return ""
    wanted = ", ".join(f"@{name}[value]" for name in missing)
    return (f"The User asked for the results in the format {wanted}. Give every result in exactly that form, "
            "with the values copied from the execution reports.")


def _printed_fields(history: Sequence[Step], round_number: int) -> dict[str, str]:
    """The ``@name[value]`` fields the round's successful code printed (the latest value of each)."""
    printed: dict[str, str] = {}
    for step in history:
        if isinstance(step, Execution) and step.ok and step.code and step.round == round_number:
            printed.update(_PRINTED_FIELD.findall(output_text(step)))
    return printed


def complete_format(text: str, history: Sequence[Step], round_number: int) -> str:
    """``text`` plus the requested ``@name[value]`` fields it lacks that the round's code printed (grounded by
    construction); fields nobody printed stay missing rather than invented."""
    printed = _printed_fields(history, round_number)
    extra = [f"@{name}[{printed[name]}]" for name in missing_fields(text, history, round_number) if name in printed]
    return text + ("\n\n" + "\n".join(extra) if extra else "")


def fields_answer(history: Sequence[Step], round_number: int) -> str:
    """When the user asked for ``@name[value]`` fields and the round's code has printed every one of them, the
    answer they asked for, taken from those printed lines (so grounded by construction); else "".

    This ends a round without another Planner call: the results exist in exactly the asked form, and a
    small Planner only risks restating them wrongly (or planning more steps for finished work)."""
    wanted = requested_fields(history, round_number)
    printed = _printed_fields(history, round_number)
    # an empty field or the format's own placeholder ("@mean[value]" printed as is) is no result
    if not wanted or any(printed.get(name, "").strip().lower() in ("", "value", "...") for name in wanted):
        return ""
    return "\n".join(f"@{name}[{printed[name].strip()}]" for name in wanted)
