"""MPI clusters: CRANE's scientific PaaS unit, a head node and compute nodes (LXC containers on one libvirt host)
with OpenMPI, passwordless SSH between them as one cluster user, and a work directory they share, configured with
the playbook and the init shipped here (playbooks/, files/). The hostfile is rendered in hostfile.py."""
