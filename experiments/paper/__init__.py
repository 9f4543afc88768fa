"""The Elk paper's evaluation (Figs. 17-24) as scripted, resumable studies on ``elk.study``.

One module per figure (``figNN_*.py``, each runnable as ``python -m experiments.paper.figNN_...``); ``spec``
says what a figure is, ``script`` runs and renders one, ``style`` and
``plots`` draw, ``report`` writes the Markdown summary that
``python -m experiments.run_all`` produces.
"""

#: Figure modules in paper order (imported by run_all.py and the tests).
FIGURES = ("fig17_latency", "fig18_breakdown", "fig19_hbm_latency", "fig20_hbm_breakdown", "fig21_noc_utilisation",
           "fig22_noc_bandwidth", "fig23_cores", "fig24_training")
