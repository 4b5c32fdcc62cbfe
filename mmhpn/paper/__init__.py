"""The paper's experiments, as the notebooks run and show them.

- `mmhpn.paper.tables`: the paper's tables as data (rows, the claims they make, the knobs the
  notebooks expose, Figure 5's stripe counts);
- `mmhpn.paper.planner`: the one run planner, the walk over rows x seeds that builds each
  configuration, used by the notebooks to train (`run_rows`) and by the book build to plan
  (`planned_run_dirs`);
- `mmhpn.paper.registry`: what each notebook trains (`NOTEBOOK_RUNS`, keyed by a short key the
  notebook passes to `run_notebook`) and the settings its parameters give every row;
- `mmhpn.paper.numbers`: the paper's numbers and claims, and checking them (`check_table`);
- `mmhpn.paper.views`: what the notebooks show (summaries, comparison tables, figure inputs);
- `mmhpn.paper.compute_cost`: the compute-cost page's readers (build times, targets,
  throughput, benchmark results).
"""
