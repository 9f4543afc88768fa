"""The compile driver and what it produces: ``compile()``, text reports, traces and plots.

The driver sits above ``solvers`` (it runs the strategies) and the graph
builders; the command line and the study runner sit above the driver.
"""
