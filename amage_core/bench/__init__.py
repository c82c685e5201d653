"""``amage bench``: accuracy against the floor and the baselines, speed and memory against alternatives.

``amage bench [--quick] [--device cpu|cuda] [--profile demo] --out FILE.json`` writes ``FILE.json``
and ``FILE.md`` (and, for a full run, the book's appendix page ``book/benchmarks/latest.md``).

Modules: :mod:`~.command` (the CLI), :mod:`~.suite` (one run: the sections, the machine, the book's
timings), :mod:`~.settings` (quick and full sizes, the accuracy profile), :mod:`~.accuracy` (every
model on the same folds, the verdict, the transfer), :mod:`~.speed` (throughput, memory, scaling, the
GPU step), :mod:`~.measure` (one fresh process per measurement, its peak memory) running
:mod:`~.tasks`, :mod:`~.abide` (the ABIDE models with sites held out) and :mod:`~.markdown` (the report).
"""
