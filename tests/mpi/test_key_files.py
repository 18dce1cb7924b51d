"""``Configuration.key_files``, the seam an MPI cluster's head run takes the cluster user's key through, run for real
(ansible-runner against the test's sshd on loopback): the playbook gets the path of a stack key's private key, the
properties name only the key, and a task that prints the key has its lines redacted from the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crane_iac.errors import ProviderError
from crane_iac.objects import Owner
from crane_iac.providers.base import CreateRequest
from tests.providers.ansible.conftest import LoopbackHost

PLAYBOOK = Path(__file__).parent / "playbooks" / "place_key.yml"


def user_key(host: LoopbackHost) -> str:
    """A second key the provider makes (as the cluster's user-key), its private key's text."""
    made = host.provider.create(CreateRequest("ssh_key", "pi-user-key", {"path": None, "type": "ed25519"},
                                              Owner("test", "mpicluster.pi/ssh_key.user-key")))
    return Path(made.outputs["private_key_path"]).read_text()


def test_the_playbook_gets_the_keys_path_and_places_it(sshd_on_loopback: LoopbackHost, tmp_path: Path) -> None:
    host, target = sshd_on_loopback, tmp_path / "target"
    target.mkdir()
    private = user_key(host)
    props = {**host.configuration("unused", target_dir=str(target), leak=False), "playbook": str(PLAYBOOK),
             "key_files": {"place_key_file": "pi-user-key"}}
    host.provider.create(CreateRequest("configuration", "loop-key", props, Owner("test", "configuration.key")))
    placed = target / "id_ed25519"
    assert placed.read_text() == private and placed.stat().st_mode & 0o777 == 0o600
    body = private.splitlines()[1]
    assert body not in json.dumps(props) and body not in "\n".join(host.progress)


def test_a_task_that_prints_the_key_fails_without_quoting_it(sshd_on_loopback: LoopbackHost, tmp_path: Path) -> None:
    host, target = sshd_on_loopback, tmp_path / "target"
    target.mkdir()
    private = user_key(host)
    props = {**host.configuration("unused", target_dir=str(target), leak=True), "playbook": str(PLAYBOOK),
             "key_files": {"place_key_file": "pi-user-key"}}
    with pytest.raises(ProviderError) as caught:
        host.provider.create(CreateRequest("configuration", "loop-key", props, Owner("test", "configuration.key")))
    message = str(caught.value)
    assert message.startswith("configuration of loop failed at task 'print the key and fail'"), message
    assert "[private key redacted]" in message or "[redacted]" in message, message
    assert not [line for line in private.splitlines()[1:-1] if line in message], message
