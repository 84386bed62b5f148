"""The planner: pure Python (no torch, no gradio), frozen inputs in, explained figures out."""
from .inputs import FIELDS, METHODS, SCHEDULERS, STRENGTHS, InputError, PlanInputs, parse_inputs
from .planner import GROUPS, PlanResult, compute_plan, plan_from_raw
from .quantity import Quantity, round_half_up

__all__ = ["FIELDS", "METHODS", "SCHEDULERS", "STRENGTHS", "GROUPS", "InputError", "PlanInputs", "PlanResult",
           "Quantity", "compute_plan", "parse_inputs", "plan_from_raw", "round_half_up"]
