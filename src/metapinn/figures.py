"""The registry of per-family figures (:func:`metapinn.plots.family_figures`): file stem →
what the report calls it and its axes. The workflow's outputs and report entries derive from
it; this module imports nothing heavy, so the Snakefile can read it cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FamilyFigure:
    """One per-family figure: its title in the report and its (x, y) variables (``None``:
    the distribution of steps to threshold)."""

    title: str
    axes: tuple[str, str] | None


FAMILY_FIGURES = {
    "convergence": FamilyFigure("u_rel_l2 against step", ("step", "u_rel_l2")),
    "coef_error": FamilyFigure("coefficient error against step", ("step", "coef_rel_err_max")),
    "wall_time": FamilyFigure("u_rel_l2 against wall time", ("wall_time", "u_rel_l2")),
    "steps_to_threshold": FamilyFigure("steps to threshold", None),
}
