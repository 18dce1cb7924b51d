"""The MPI tests' fixtures: the real sshd on loopback of the ansible provider's tests."""

from tests.providers.ansible.conftest import sshd_on_loopback

__all__ = ["sshd_on_loopback"]
