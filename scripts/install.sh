#!/usr/bin/env bash
# Installs crane and everything it needs on a Debian machine: the Debian packages
# (as root, or through sudo), then a virtualenv at .venv with crane and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
# libvirt-dev..python3-venv build crane; the rest is the real hypervisor the integration tests start
# (scripts/realhost.sh): libvirtd with QEMU, qemu-img for qcow2 volumes, dnsmasq for DHCP, iptables for NAT networks, cpio for the test guest;
# postgresql is the state backend's real server (the state tests start a throwaway one; the package's own cluster is not used);
# libvirt-daemon-driver-lxc runs app domains' containers, whose programs are this host's own: haproxy (the load balancer),
# openssh-server (sshd, which Ansible configures them through), postgresql (the storage server's database) and
# python3-psycopg (the web app's PostgreSQL driver for the system Python, which runs it); runit supervises their
# services (runsv) and is the containers' PID 1 (runsvdir, exec'd by appdomain/files/init.sh); libxml2-utils is
# xmllint, which libvirt-clients' virt-xml-validate runs (tests validate crane's XML against libvirt's schemas).
DEB_PACKAGES=(libvirt-dev libvirt-clients libxml2-utils pkg-config gcc python3-venv
              libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils dnsmasq-base iptables cpio
              postgresql libvirt-daemon-driver-lxc haproxy openssh-server openssh-client python3-psycopg runit
              # MPI clusters' nodes run this host's programs (read-only): OpenMPI, mpicc's headers, rsync for staging,
              # and for scheduler="slurm" Slurm's daemons and commands with munge (the clusters run their own daemons)
              openmpi-bin libopenmpi-dev rsync slurmctld slurmd slurm-client munge)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# the ranges in pyproject.toml, at the exact versions of requirements.lock (scripts/lock.sh writes it)
.venv/bin/pip install -q --disable-pip-version-check -c requirements.lock -e '.[all,dev]'
echo "crane installed in .venv ($(.venv/bin/crane --version))"
