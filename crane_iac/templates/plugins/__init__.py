"""Ansible plug-ins crane passes to ansible-playbook by directory (ANSIBLE_CONNECTION_PLUGINS); not imported by
crane itself."""
