"""Studies: declared grids of compiles that run once, resume after a kill, and load as one table.

    from elk.study import Study, grid, run_study, load_results

The runner (:mod:`elk.study.runner`) schedules points, :mod:`elk.study.point`
declares what a point is, :mod:`elk.study.execute` compiles one (sharing plan
tables between points), :mod:`elk.study.store` keeps one atomic file per point.
"""
from elk.study.point import KNOBS, PAPER, SCHEMA_VERSION, Point, StudyError
from elk.study.runner import (RESULT_COLUMNS, Study, export_results, grid, load_results, run_study, to_frame,
                              write_frame)

__all__ = ["Point", "Study", "StudyError", "grid", "run_study", "load_results", "export_results", "to_frame",
           "write_frame", "KNOBS", "PAPER", "SCHEMA_VERSION", "RESULT_COLUMNS"]
