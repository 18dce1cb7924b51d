"""The autoscaler: a scaling policy per app domain (``policy``), the pure decision it drives (``decision``, on the
period's reading and trend: ``reading``), and — later — the loop that observes a web tier, decides, records why,
and asks the engine to converge."""
