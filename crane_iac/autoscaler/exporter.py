"""The autoscaler's Prometheus metrics (prometheus-client), served on 127.0.0.1 unless told otherwise:

  crane_autoscale_size{domain}                   servers the tier has now (recorded in state)
  crane_autoscale_desired_size{domain}           the size the last decision asked for
  crane_autoscale_utilisation{domain}            the tier's fresh average of the signal (NaN without samples)
  crane_autoscale_decisions_total{domain,direction,rule}   decisions, by direction and rule
  crane_autoscale_apply_seconds{domain}          how long each converging apply took (a histogram)
  crane_autoscale_errors_total{domain}           periods that ended in an error for the domain
  crane_autoscale_refused_samples_total{domain,reason}   agents' samples not believed (agents.py: not-in-tier,
                                                 bad-mac, replay, malformed; domain "" when the sender is of none)
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from crane_iac.autoscaler.decision import Decision


class Exporter:
    """The metrics of one autoscaler; ``serve(port)`` publishes them over HTTP."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.size = Gauge("crane_autoscale_size", "Servers the web tier has now.", ["domain"],
                          registry=self.registry)
        self.desired = Gauge("crane_autoscale_desired_size", "Size the last decision asked for.", ["domain"],
                             registry=self.registry)
        self.utilisation = Gauge("crane_autoscale_utilisation", "The tier's fresh average of its signal.",
                                 ["domain"], registry=self.registry)
        self.decisions = Counter("crane_autoscale_decisions", "Decisions by direction and rule.",
                                 ["domain", "direction", "rule"], registry=self.registry)
        self.apply_seconds = Histogram("crane_autoscale_apply_seconds", "Seconds each converging apply took.",
                                       ["domain"], registry=self.registry,
                                       buckets=(0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300))
        self.errors = Counter("crane_autoscale_errors", "Periods that ended in an error.", ["domain"],
                              registry=self.registry)
        self.refused = Counter("crane_autoscale_refused_samples", "Agents' samples not believed, by reason.",
                               ["domain", "reason"], registry=self.registry)

    def refused_sample(self, domain: str, reason: str) -> None:
        """Count a sample the agents' receiver refused (called from its threads: prometheus-client's counters are
        thread-safe)."""
        self.refused.labels(domain, reason).inc()

    def serve(self, port: int, address: str = "127.0.0.1") -> None:
        """Publish /metrics on ``address:port`` from a daemon thread (it ends with the process)."""
        start_http_server(port, addr=address, registry=self.registry)

    def record(self, domain: str, *, size: int, decision: Decision | None, apply_seconds: float | None,
               error: bool) -> None:
        self.size.labels(domain).set(size)
        if decision is not None:
            self.desired.labels(domain).set(decision.size)
            average = decision.reading.average
            self.utilisation.labels(domain).set(math.nan if average is None else average)
            self.decisions.labels(domain, str(decision.direction), str(decision.rule)).inc()
        if apply_seconds is not None:
            self.apply_seconds.labels(domain).observe(apply_seconds)
        errors = self.errors.labels(domain)  # from the domain's first period, as 0 until one ends in an error
        if error:
            errors.inc()
