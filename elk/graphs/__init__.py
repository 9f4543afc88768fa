"""Model graphs: builders from architecture configs (the zoo) and importers of other graph formats.

Everything here turns a description of a model into an :class:`elk.ir.Program`;
it depends on the core only.
"""
from elk.graphs.zoo import MODES, build_program, list_models, resolve_model

__all__ = ["MODES", "build_program", "list_models", "resolve_model"]
