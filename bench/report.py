"""The figures of one `make bench` run, printed at the end as one table beside their goals."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: str
    goal: str
    met: bool | None  # None: printed for comparison, no goal of its own


FIGURES: list[Figure] = []


def add(name: str, value: str, goal: str = "", met: bool | None = None) -> None:
    FIGURES.append(Figure(name, value, goal, met))
    mark = "" if met is None else (" (goal met)" if met else " (GOAL MISSED)")
    print(f"  = {name}: {value}{mark}", flush=True)


def table() -> str:
    if not FIGURES:
        return ""
    width = max(len(figure.name) for figure in FIGURES)
    value_width = max(len(figure.value) for figure in FIGURES)
    lines = [f"{'figure':<{width}}  {'measured':<{value_width}}  goal", "-" * (width + 40)]
    for figure in FIGURES:
        mark = {None: "", True: "met", False: "MISSED"}[figure.met]
        goal = f"{figure.goal} {mark}".strip()
        lines.append(f"{figure.name:<{width}}  {figure.value:<{value_width}}  {goal}")
    return "\n".join(lines)


def ratio(rate: float, limit: float) -> str:
    return f"{rate:,.0f}/s = {rate / limit:.2f}x the wire ({limit:,.0f}/s)"
