"""The two baseline strategies, on a `Problem`. Neither splits a line; both honour
allow_split (one site) and allow_partial (all or nothing). Nearest = first in
`Problem.sources`."""

from __future__ import annotations

from engine.core.routing.problem import Allocation, Ledger, Problem, Source


def nearest(problem: Problem) -> Allocation:
    """Each line whole from the nearest source with enough left; else unallocated.

    One package only: the nearest source that fills every line, failing that (partial
    allowed) the nearest source that fills any line whole, with all the lines it fills.
    """
    if not problem.allow_split:
        return _one_site(problem, _first_filling_all(problem) or _first_filling_any(problem))
    ledger, alloc = Ledger(), {}
    for j, line in enumerate(problem.lines):
        for src in problem.sources:
            if ledger.left(src.site, line.sku) >= line.quantity:
                ledger.take(src.site, line.sku, line.quantity)
                alloc.setdefault(src.site.location_id, {})[j] = line.quantity
                break
    return _all_or_nothing(problem, alloc)


def ranked(problem: Problem) -> Allocation:
    """Fewest packages: the nearest single source that fills everything; else repeatedly
    the source filling the most remaining lines whole (ties: nearer first)."""
    single = _first_filling_all(problem)
    if single is not None or not problem.allow_split:
        return _one_site(problem, single or _most_lines(problem, Ledger(), range(len(problem.lines)))[0])
    ledger, alloc = Ledger(), {}
    remaining = list(range(len(problem.lines)))
    while remaining:
        src, filled = _most_lines(problem, ledger, remaining)
        if src is None:
            break
        for j in filled:
            line = problem.lines[j]
            ledger.take(src.site, line.sku, line.quantity)
            alloc.setdefault(src.site.location_id, {})[j] = line.quantity
        remaining = [j for j in remaining if j not in filled]
    return _all_or_nothing(problem, alloc)


def _fillable(ledger: Ledger, src: Source, problem: Problem, indexes) -> list[int]:
    """Lines (in order) that `src` can fill whole, one after another from what is left."""
    taken: dict[str, int] = {}
    out = []
    for j in indexes:
        line = problem.lines[j]
        if ledger.left(src.site, line.sku) - taken.get(line.sku, 0) >= line.quantity:
            taken[line.sku] = taken.get(line.sku, 0) + line.quantity
            out.append(j)
    return out


def _first_filling_all(problem: Problem) -> Source | None:
    every = range(len(problem.lines))
    ledger = Ledger()
    return next((s for s in problem.sources if len(_fillable(ledger, s, problem, every)) == len(every)), None)


def _first_filling_any(problem: Problem) -> Source | None:
    if not problem.allow_partial:
        return None
    ledger = Ledger()
    return next((s for s in problem.sources if _fillable(ledger, s, problem, range(len(problem.lines)))), None)


def _most_lines(problem: Problem, ledger: Ledger, indexes) -> tuple[Source | None, list[int]]:
    best, best_lines = None, []
    for src in problem.sources:  # nearest first, so a strict > keeps the nearer on ties
        lines = _fillable(ledger, src, problem, indexes)
        if len(lines) > len(best_lines):
            best, best_lines = src, lines
    return best, best_lines


def _one_site(problem: Problem, src: Source | None) -> Allocation:
    if src is None:
        return {}
    lines = _fillable(Ledger(), src, problem, range(len(problem.lines)))
    return _all_or_nothing(problem, {src.site.location_id: {j: problem.lines[j].quantity for j in lines}})


def _all_or_nothing(problem: Problem, alloc: Allocation) -> Allocation:
    if problem.allow_partial:
        return {loc: units for loc, units in alloc.items() if units}
    served = sum(n for units in alloc.values() for n in units.values())
    return alloc if served == sum(line.quantity for line in problem.lines) else {}
