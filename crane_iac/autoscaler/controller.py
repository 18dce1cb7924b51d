"""The autoscaler's loop: a client of the engine, level-triggered, as Kubernetes' HPA controller is.

Each period, for every tier the stack declares scalable (``AppDomain(autoscale=ScalingPolicy(...))``): read the
servers' signal (metrics.py), decide (decision.py, pure), and when the size changes write it as the tier's durable
setting with the decision's reason, by ``autoscaler`` (the state history keeps it), then converge that tier with a
targeted plan and apply through the workspace — never a provider mutator. A period that finds the tier not yet at
its size (a failed or interrupted apply, a loop killed mid-apply) converges it again; a size the stack's new range
excludes is written back clamped, with the reason. Every error of a period (a source down, a lock a human apply
holds, an apply that fails) is logged, and the next period tries again.

Replicas (``leadership``, leader.py): on a shared state store several loops run, and only the one that holds the
stack's lease runs periods; every write carries its fencing token, and it renews the lease before an apply. What the
decision keeps between periods (its History, and when each server was first seen) is kept in the state store with
each decision (``memory.TierMemory``, in the transaction that writes the size, or alone for a period that holds), and
read back at every period: a loop restarted or taken over carries on from the last period any replica completed.

The sources (``_source``): the sandbox's simulated values; HAProxy's session rate; else the policy's ``source``:
the endpoint's readings (memory, or CPU from two readings of CPU time) or the agents'. What must outlive a period
does: the agents' receivers (created at the first period that needs them, stopped by ``close()``) and the last CPU
time readings.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from crane_iac.autoscaler.agents import AgentMetrics
from crane_iac.autoscaler.decision import Decision, History, Host, decide
from crane_iac.autoscaler.exporter import Exporter
from crane_iac.autoscaler.leader import Leadership
from crane_iac.autoscaler.memory import TierMemory
from crane_iac.autoscaler.metrics import (
    HAProxySessions,
    MetricsSource,
    ProviderCpu,
    ProviderMemory,
    SimulatedMetrics,
    current_sessions,
)
from crane_iac.autoscaler.policy import ScalingPolicy
from crane_iac.autoscaler.removal import Removal, choose
from crane_iac.engine import failpoints
from crane_iac.engine.workspace import PlanOptions, Workspace
from crane_iac.errors import CraneError, LockHeldError
from crane_iac.projectkey import agent_key_name, derived_key
from crane_iac.providers.metrics import CpuTime
from crane_iac.scaling import ScalableTier
from crane_iac.state.base import Fence, StackState

#: who the autoscaler's settings are by, in the state history
BY = "autoscaler"


@dataclass
class TierReport:
    """What one period did for one tier."""

    tier: str
    decision: Decision | None = None
    converged: bool = False
    error: str = ""
    #: servers the tier had at the start of the period (recorded in state)
    size: int = 0
    apply_seconds: float | None = None
    #: which servers a scale-in removes, and why those
    removal: Removal | None = None
    #: what the decision keeps for the next period, if it is carried out
    memory: TierMemory | None = None


@dataclass
class Autoscaler:
    """One stack's autoscaler; ``period()`` runs one period (the CLI runs them until told to stop), ``close()``
    stops what it keeps between periods."""

    workspace: Workspace
    log: Callable[[str], None] = print
    clock: Callable[[], float] = time.time
    histories: dict[str, History] = field(default_factory=dict)
    #: when this loop first saw each server, by tier: a server it saw at its first period counts as warmed up (the
    #: loop was restarted, the server was not); a server gone from state is forgotten, so one made again under its
    #: number (new servers take the lowest free numbers) warms up anew
    first_seen: dict[str, dict[str, float]] = field(default_factory=dict)
    periods: int = 0
    exporter: Exporter | None = None
    #: the agents' receivers and samples, for every tier whose policy reads the agents
    agents: AgentMetrics | None = None
    #: the last CPU time reading of each server (endpoint, name), for ProviderCpu
    cpu_readings: dict[tuple[str, str], tuple[CpuTime, float]] = field(default_factory=dict)
    #: the stack's lease, when this loop is one of several replicas: its writes carry the lease's token
    leadership: Leadership | None = None
    #: receivers that could not be started, logged once until one starts
    _deaf: set[tuple[str, int]] = field(default_factory=set, init=False, repr=False)
    #: what each tier's decision of this period keeps if carried out, until the period takes it
    _decided: dict[str, TierMemory] = field(default_factory=dict, init=False, repr=False)

    def period(self) -> list[TierReport]:
        loaded, state = self.workspace.load_with_state()
        kept = self.workspace.store.memory(self.workspace.name) if loaded.tiers else {}
        reports: list[TierReport] = []
        if loaded.tiers:
            with self.workspace.endpoints(mutating=False) as (endpoints, _, _):
                # the period's time once the stack is loaded and the endpoints connected (seconds on a busy
                # machine): a sample an agent takes in between is not "stamped in the future" (late) against it
                now = self.clock()
                for tier in loaded.tiers:
                    report = TierReport(tier.address)
                    try:
                        policy = ScalingPolicy(**tier.policy)
                        reaches = endpoints[tier.endpoint].reaches_guests
                        source = self._source(tier, policy, reaches, endpoints)
                        report.decision = self._decide(tier, policy, state, source, now, kept.get(tier.setting))
                        report.memory = self._decided.pop(tier.address)
                        if report.decision.size < tier.size:
                            sessions = current_sessions(tier) if reaches else \
                                SimulatedMetrics(self.workspace.project.root / ".crane").sessions(tier)
                            report.removal = choose(tier.hosts, sessions, tier.size - report.decision.size)
                    except CraneError as exc:
                        report.error = str(exc)
                    reports.append(report)
        failpoints.hit("autoscale-decided")
        for tier, report in zip(loaded.tiers, reports, strict=True):
            report.size = self._existing(tier, state)
            if not report.error:
                self._act(tier, state, report)
            self.log(self._line(report))
            if self.exporter is not None:
                self.exporter.record(tier.address, size=report.size, decision=report.decision,
                                     apply_seconds=report.apply_seconds, error=bool(report.error))
        self.periods += 1
        return reports

    def serve(self, period: float, stopping: threading.Event) -> None:
        """Run a period every ``period`` seconds until ``stopping`` is set; with ``leadership``, only while this
        replica leads (it stands by otherwise, trying to take the lease at each period). A period's error is logged,
        and the next period tries again."""
        while True:
            if self.leadership is None or self.leadership.try_lead():
                try:
                    self.period()
                except Exception as exc:
                    self.log(f"{type(exc).__name__}: {exc}")
            if stopping.wait(period):
                return

    def _source(self, tier: ScalableTier, policy: ScalingPolicy, reaches_guests: bool,
                endpoints: object) -> MetricsSource:
        if not reaches_guests:  # the sandbox: nothing runs whose signal could be read
            return SimulatedMetrics(self.workspace.project.root / ".crane")
        if policy.signal == "sessions":
            return HAProxySessions()
        if policy.source == "agent":
            return self._agents(tier)
        if policy.signal == "cpu":
            return ProviderCpu(lambda name: endpoints[name], self.cpu_readings)  # type: ignore[index]
        return ProviderMemory(lambda name: endpoints[name])  # type: ignore[index]

    def _agents(self, tier: ScalableTier) -> AgentMetrics:
        """The agents' source, receiving pushes on the tier's network from now on; where it cannot (the address is
        not this machine's, the port is taken) the servers are pulled alone, which is logged once."""
        if self.agents is None:
            self.agents = AgentMetrics(on_refused=self.exporter.refused_sample if self.exporter is not None else None)
        # the tier's hosts as they are this period, and its domain's key: no one else's samples are believed
        self.agents.admit(tier, derived_key(self.workspace.project.root / ".crane", agent_key_name(tier.address)))
        if tier.agent_listen is not None and tier.agent_port is not None:
            where = (tier.agent_listen, tier.agent_port)
            try:
                if self.agents.listen(*where):
                    self.log(f"{tier.address}: receiving the agents' pushes on {where[0]}:{where[1]}")
                self._deaf.discard(where)
            except CraneError as exc:
                if where not in self._deaf:
                    self.log(f"{tier.address}: {exc}; pulling every server instead")
                self._deaf.add(where)
        return self.agents

    def close(self) -> None:
        """Stop the agents' receivers."""
        if self.agents is not None:
            self.agents.close()
            self.agents = None

    def _decide(self, tier: ScalableTier, policy: ScalingPolicy, state: StackState, source: MetricsSource,
                now: float, stored: object = None) -> Decision:
        """The period's decision, from the memory the state store keeps of the tier (``stored``) where it keeps
        one, else from this loop's; what it keeps if carried out is left in ``_decided``."""
        if stored is not None:
            memory = TierMemory.from_json(stored)
            history, first, new = memory.history, dict(memory.first_seen), now
        else:  # a server this loop saw at its first period counts as warmed up: the loop restarted, not the server
            history = self.histories.get(tier.address, History())
            first, new = dict(self.first_seen.get(tier.address, {})), -math.inf if not self.periods else now
        seen = [h for h in tier.hosts if h.address in state.resources]  # the servers that exist
        for gone in set(first) - {h.physical for h in seen}:  # a server removed: its number may come back anew
            del first[gone]
        hosts = [Host(h.physical, first.setdefault(h.physical, new)) for h in seen]
        samples = source.read(tier, now)
        decision, history = decide(policy, size=tier.size, min=tier.min, max=tier.max, hosts=hosts,
                                   samples=samples, now=now, history=history)
        self._decided[tier.address] = TierMemory(history, first)
        return decision

    def _act(self, tier: ScalableTier, state: StackState, report: TierReport) -> None:
        """Write a new size (or one the stack's range clamped) with its reason, then converge the tier."""
        decision, memory = report.decision, report.memory
        assert decision is not None and memory is not None
        recorded = state.settings.get(tier.setting)
        removal = report.removal
        # a removal the size alone does not make (not the newest) also names the servers that stay
        chosen = removal if removal is not None and not removal.newest and tier.members_setting else None
        fence = self.leadership.fence if self.leadership is not None else None
        # the decision's memory goes with the write that carries the decision out, or alone for a period that holds
        kept: dict[str, object] | None = {tier.setting: memory.to_json()}
        try:
            if chosen is not None:
                # first the members with the chosen servers last (the same servers: nothing changes), then the size
                # (which drops the last ones), then the members that stay: interrupted (a kill, a human apply taking
                # the lock) between any two writes, the tier is what it was or what was decided
                self._set(tier.members_setting, [h.number for h in chosen.kept + chosen.removed],
                          f"{decision.rule}: {chosen.reason}", fence)
                failpoints.hit("autoscale-chosen")
            if decision.size != tier.size:
                why = f"{decision.rule}: {decision.reason}" + (f"; {removal.reason}" if removal else "")
                self._set(tier.setting, decision.size, why, fence, kept)
                kept = None
                failpoints.hit("autoscale-resized")
                if chosen is not None:
                    self._set(tier.members_setting, [h.number for h in chosen.kept],
                              f"{decision.rule}: {chosen.reason}", fence)
                    failpoints.hit("autoscale-members")
            elif recorded is not None and recorded.value != tier.size:
                self._set(tier.setting, tier.size, (f"clamped: {recorded.value} is outside the stack's range "
                                                    f"[{tier.min}, {tier.max}] for {tier.address}: {tier.size}"),
                          fence, kept)
                kept = None
            if kept is not None:
                self.workspace.store.remember(self.workspace.name, kept, fence=fence)
            self.histories[tier.address], self.first_seen[tier.address] = memory.history, memory.first_seen
            if decision.size != tier.size or report.size != tier.size or self._pending(tier):
                if self.leadership is not None:
                    self.leadership.confirm()  # a replica that lost the lease does not apply
                failpoints.hit("autoscale-applying")
                started = time.monotonic()
                report.converged = self._converge(tier)
                report.apply_seconds = time.monotonic() - started
        except LockHeldError as exc:
            report.error = f"waiting: {exc}"
        except CraneError as exc:
            report.error = str(exc)

    def _set(self, key: str, value: object, why: str, fence: Fence | None,
             memory: dict[str, object] | None = None) -> None:
        self.workspace.set_setting(key, value, by=BY, why=why, fence=fence, memory=memory)

    @staticmethod
    def _existing(tier: ScalableTier, state: StackState) -> int:
        """Servers of the tier recorded in state, those beyond its size included (a tier not shrunk yet)."""
        prefix = tier.member_prefix
        if prefix:
            return sum(1 for a in state.resources if a.startswith(prefix))
        return sum(1 for h in tier.hosts if h.address in state.resources)

    def _pending(self, tier: ScalableTier) -> bool:
        """Whether the tier's component still differs from its state (a loop killed mid-apply, an apply that
        failed): a targeted plan against state alone, without reading the endpoint."""
        return self.workspace.plan(PlanOptions(refresh=False, targets=(tier.address,))).has_changes

    def _converge(self, tier: ScalableTier) -> bool:
        """A targeted plan and apply of the tier's component, under the stack's lock."""
        with self.workspace.locked(f"autoscale {tier.address}") as run:
            plan = run.plan(PlanOptions(targets=(tier.address,)))
            if not plan.has_changes:
                return False
            result = run.apply(plan)
        if not result.ok:
            raise CraneError(f"converging {tier.address} failed: "
                             + "; ".join(f"{e.address}: {e.detail}" for e in result.failed))
        return True

    @staticmethod
    def _line(report: TierReport) -> str:
        stamp = time.strftime("%H:%M:%S")
        if report.decision is None:
            return f"{stamp} {report.tier}: error: {report.error}"
        d = report.decision
        line = f"{stamp} {report.tier}: {d.direction} to {d.size} ({d.rule}): {d.reason}"
        if report.removal is not None:
            line += f"; {report.removal.reason}"
        if report.converged:
            line += "; applied"
        if report.error:
            line += f"; {report.error}"
        return line
