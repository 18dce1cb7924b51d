#!/usr/bin/env bash
# Starts (or stops) the real hypervisor the integration tests use: libvirtd with the QEMU driver (qemu:///system)
# and the LXC driver (lxc:///system).
#
#   scripts/realhost.sh start   exit 0: qemu:///system answers (and lxc:///system, when this script started libvirtd)
#                               exit 3: not root and no daemon answers: cannot start one here (reason on stdout)
#                               exit 1: it should have worked and did not (reason and the daemon log's tail on stdout)
#   scripts/realhost.sh stop    undoes exactly what `start` did (with the same CRANE_REALHOST_STATE)
#
# `start` needs root, unless qemu:///system already answers this user (then it changes nothing). It installs the
# Debian packages if any is missing, creates the `kvm` and `libvirt-qemu` groups and the `libvirt-qemu` user QEMU
# runs as (libvirt 9.0 refuses to start QEMU domains, and its qemu:///system does not answer, without both the
# user and a group of that name), and starts virtlogd and libvirtd unless they already run. A libvirtd that was
# running before is left alone, and `stop` leaves it running. Every change `start` makes is recorded in the state
# directory (CRANE_REALHOST_STATE, default /run/crane-realhost): `stop` undoes those and nothing else, so two
# users of the script with different state directories never stop each other's daemon. A failed `start` undoes
# its own changes before it exits. The daemons log to the state directory (libvirtd.log, virtlogd.log).
#
# /dev/kvm: on these machines it may exist but belong to a nested, software-emulated setup. Crane's tests use
# domain type 'qemu' (pure emulation) and never KVM, but libvirtd still looks at the node: when QEMU's probe
# (as root) can open it and the QEMU user cannot, libvirt 9.0 judges its capability cache stale on every call
# and re-probes QEMU, about 30 s per define. `start` gives the node the mode Debian's udev rule gives it
# (root:kvm 0660) so both agree; `stop` puts back the mode it found.
#
# Containers (lxc:///system) on hybrid cgroups (v1 controllers, and cgroup2 mounted at /sys/fs/cgroup/unified):
# libvirt 9.0 takes the v2 mount for a controller hierarchy and fails every container start with "Unable to create
# directory /sys/fs/cgroup/unified/...". `start` then runs libvirtd in a mount namespace of its own in which that
# one mount is unmounted (`unshare -m --propagation private`); the rest of the machine keeps it. The namespace
# goes with the daemon and the containers' supervisors (libvirt_lxc): nothing to undo.
set -uo pipefail
cd "$(dirname "$0")/.."
STATE_DIR=${CRANE_REALHOST_STATE:-/run/crane-realhost}
URI=qemu:///system
LXC_URI=lxc:///system
PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc libvirt-clients qemu-system-x86
          qemu-utils dnsmasq-base iptables cpio)

answers() { timeout 10 virsh -c "${1:-$URI}" version >/dev/null 2>&1; }

# hybrid cgroups: v1 controllers beside a cgroup2 mount at /sys/fs/cgroup/unified (see the top of this file)
hybrid_cgroups() {
    [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ] \
        && [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]
}

log_tail() {
    for f in "$STATE_DIR/libvirtd.log" "$STATE_DIR/virtlogd.log"; do
        [ -s "$f" ] || continue
        echo "--- last lines of $f:"
        grep -v ' : info : \| : debug : ' "$f" | tail -n 25
    done
}

fail() {  # an error as root: say why, show the daemon's log, undo what start did, exit 1
    echo "$1"
    log_tail
    stop >/dev/null 2>&1
    exit 1
}

created() { echo "$1" >> "$STATE_DIR/created"; }

start() {
    if [ "$(id -u)" -ne 0 ]; then
        answers && { echo "qemu:///system answers (not root): using it as it is" >&2; exit 0; }
        echo "not root, and qemu:///system does not answer this user: run the tests as root (or start libvirtd)"
        exit 3
    fi
    missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"; } >/dev/null 2>&1 || { echo "apt-get install ${missing[*]} failed"; exit 1; }
    fi
    command -v qemu-system-x86_64 >/dev/null || { echo "no qemu-system-x86_64 after installing qemu-system-x86"; exit 1; }
    mkdir -p "$STATE_DIR" /var/log/libvirt /run/libvirt /var/lib/libvirt/images
    getent group kvm >/dev/null || { groupadd -r kvm && created group:kvm; }
    getent group libvirt-qemu >/dev/null || { groupadd -r libvirt-qemu && created group:libvirt-qemu; }
    if ! id libvirt-qemu >/dev/null 2>&1; then
        useradd -r -g kvm -G libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu \
            && created user:libvirt-qemu
    fi
    # only a change of this start's own is recorded: a node already root:kvm 0660 (another user's start, or udev)
    # is left for whoever set it, so two users' stops never undo each other's
    if [ -c /dev/kvm ] && [ ! -e "$STATE_DIR/kvm.mode" ] && [ "$(stat -c '%U:%G %a' /dev/kvm)" != "root:kvm 660" ]; then
        stat -c '%U:%G %a' /dev/kvm > "$STATE_DIR/kvm.mode"
        chown root:kvm /dev/kvm && chmod 0660 /dev/kvm
    fi
    if answers; then echo "qemu:///system already answers: using it as it is" >&2; exit 0; fi
    if ! pgrep -x virtlogd >/dev/null; then
        LIBVIRT_LOG_OUTPUTS="3:file:$STATE_DIR/virtlogd.log" virtlogd -d || fail "virtlogd did not start"
        pgrep -nx virtlogd > "$STATE_DIR/virtlogd.pid"
    fi
    if ! pgrep -x libvirtd >/dev/null; then
        # the first container makes libvirt's /machine partition in each cgroup hierarchy: stop removes those
        for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/*/; do
            hierarchy=${hierarchy%/}
            [ "$(stat -f -c %T "$hierarchy")" = cgroup2fs ] || [ "$(stat -f -c %T "$hierarchy")" = cgroupfs ] \
                || continue
            [ -d "$hierarchy/machine" ] || created "cgroup:$hierarchy/machine"
        done
        export LIBVIRT_LOG_OUTPUTS="3:file:$STATE_DIR/libvirtd.log"
        if hybrid_cgroups; then
            unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec libvirtd -d' \
                || fail "libvirtd did not start (in a mount namespace without /sys/fs/cgroup/unified)"
        else
            libvirtd -d || fail "libvirtd did not start"
        fi
        unset LIBVIRT_LOG_OUTPUTS
        sleep 0.5
        pgrep -nx libvirtd > "$STATE_DIR/libvirtd.pid" || fail "libvirtd exited at once"
    fi
    for _ in $(seq 60); do answers && break; sleep 0.5; done
    answers || fail "libvirtd started but $URI does not answer"
    if [ -s "$STATE_DIR/libvirtd.pid" ]; then
        answers "$LXC_URI" || fail "libvirtd started but $LXC_URI does not answer (libvirt-daemon-driver-lxc?)"
    fi
    # the first define makes libvirtd probe QEMU's capabilities (up to half a minute here): pay it now, once
    echo "<domain type='qemu'><name>crane-probe</name><memory unit='MiB'>32</memory><os><type>hvm</type></os></domain>" \
        > "$STATE_DIR/probe.xml"
    virsh -c "$URI" define "$STATE_DIR/probe.xml" >/dev/null 2>&1 || fail "libvirtd cannot define a QEMU domain"
    virsh -c "$URI" undefine crane-probe >/dev/null 2>&1
    rm -f "$STATE_DIR/probe.xml"
    echo "started: $(cat "$STATE_DIR"/*.pid 2>/dev/null | tr '\n' ' ')" >&2
}

stop() {
    [ -d "$STATE_DIR" ] || return 0
    for name in libvirtd virtlogd; do
        f="$STATE_DIR/$name.pid"
        [ -s "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null
        rm -f "$f"
    done
    if [ -s "$STATE_DIR/kvm.mode" ] && [ -c /dev/kvm ]; then
        read -r owner mode < "$STATE_DIR/kvm.mode"
        chown "$owner" /dev/kvm && chmod "$mode" /dev/kvm
    fi
    rm -f "$STATE_DIR/kvm.mode"
    if [ -s "$STATE_DIR/created" ]; then
        # libvirt's empty /machine cgroups (a container still running keeps its own: rmdir leaves a busy one)
        grep '^cgroup:' "$STATE_DIR/created" | cut -d: -f2- | while read -r d; do rmdir "$d" 2>/dev/null; done
        # the user first: a group that is someone's primary group cannot be deleted
        grep -q '^user:libvirt-qemu$' "$STATE_DIR/created" && userdel libvirt-qemu 2>/dev/null
        tac "$STATE_DIR/created" | grep '^group:' | cut -d: -f2 | while read -r g; do groupdel "$g" 2>/dev/null; done
        rm -f "$STATE_DIR/created"
    fi
    rm -f "$STATE_DIR"/*.log
    rmdir "$STATE_DIR" 2>/dev/null
    return 0
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
