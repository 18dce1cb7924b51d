"""A web tier simulated period by period, to compare autoscaling policies on the same synthetic load traces.

``traces`` makes the loads (fixed seeds), ``web_tier`` turns a load and a set of servers into per-server memory
utilisation and scores a run (SLO-violation time, server-hours, actions), ``policies`` holds the three policies
compared: CRANE's plain two-threshold rule, an HPA-style rule, and crane's controller (the real ``decide``).
The evaluation on many traces: ``shapes`` and ``families`` (540 traces in 18 families, split by seed into tuning and
held-out sets), ``evaluation`` (one trace through every policy) and ``report`` (the tables and the targets).
"""
