"""A XenAPI simulator for tests: a simulated XenServer/XCP-ng pool behind an XML-RPC endpoint on loopback, spoken
to through the unmodified official ``XenAPI`` SDK. It is a simulator, not XenServer: docs/guides/xenapi-simulator.md
says what it models and what only a real pool can show."""

from tests.xensim.config import DEFAULT_FEATURES, HostSpec, ManualClock, PoolSpec, SRSpec, TemplateSpec
from tests.xensim.errors import XenError
from tests.xensim.faults import Stall
from tests.xensim.simulator import Simulator

__all__ = ["DEFAULT_FEATURES", "HostSpec", "ManualClock", "PoolSpec", "SRSpec", "Simulator", "Stall",
           "TemplateSpec", "XenError"]
