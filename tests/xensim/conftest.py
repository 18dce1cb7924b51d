from tests.xensim.fixtures import xen_simulator  # noqa: F401
