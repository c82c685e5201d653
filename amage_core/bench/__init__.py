"""``amage bench``: accuracy against the oracle and the baselines, speed and memory against alternatives.

``amage bench [--quick] [--device cpu|cuda] [--profile demo] --out FILE.json`` writes ``FILE.json``
and ``FILE.md`` (and, for a full run, the book's appendix page ``book/benchmarks/latest.md``).

Modules: :mod:`~.settings` (quick and full sizes, the accuracy profile), :mod:`~.accuracy` (every
model on the same folds, the oracle verdict, the transfer), :mod:`~.speed` (throughput, memory,
scaling, the GPU step), :mod:`~.measure` and :mod:`~.worker` (one fresh process per measurement,
peak RSS), :mod:`~.data_tasks` and :mod:`~.train_tasks` (what those processes run),
:mod:`~.machine` (machine, versions, commit, book timings), :mod:`~.abide` (the ABIDE models with
sites held out, as chapter 11 runs them), :mod:`~.suite` (one run),
:mod:`~.markdown` (the report), :mod:`~.command` (the CLI).
"""
