# crane's Slurm part of an MPI cluster node's init (files/init.sh evaluates it, with its variables, just before it
# execs runsvdir), for a cluster with scheduler="slurm". The programs are this host's (Debian's slurmctld, slurmd,
# slurm-client and munge); so are the slurm and munge users, the same on every node. It
#  - bind-mounts the cluster's Slurm configuration directory on the shared disk over /etc/slurm (the head's
#    configuration run writes slurm.conf there: every node reads the one file);
#  - adds runsvdir services: munged on every node (the cluster's key, which the head's run places on the shared
#    disk), slurmctld on the head, slurmd on a compute node. Each service waits (runsv starts it again every second)
#    until what it needs is there: the key, then slurm.conf, and for slurmd its own NodeName line in it, so a node
#    added by a resize starts its slurmd once the head's run has rewritten slurm.conf.
# Variables from CRANE_SLURM: "head" or "node".
slurm_dir="$shared/.crane/slurm"
munge_key="$shared/.crane/munge/munge.key"
if [ ! -d /etc/slurm ] || [ ! -x /usr/sbin/munged ]; then
    # the head's run fails naming the missing packages; the node keeps its sshd
    echo "crane init: Slurm or munge is not installed on this host: no Slurm daemons" >&2
else
    mkdir -p "$slurm_dir/etc"
    chmod 0755 "$slurm_dir" "$slurm_dir/etc"
    mount --bind "$slurm_dir/etc" /etc/slurm || fail "cannot bind-mount the cluster's Slurm configuration"
    address=$(ip -4 -o addr show scope global 2>/dev/null | awk '{sub("/.*", "", $4); print $4; exit}')
    mkdir -p "$init_dir/munged"
    cat > "$init_dir/munged/run" <<EOF
#!/bin/sh
exec 2>&1
[ -s $munge_key ] || exit 1
mkdir -p -m 0755 /run/munge && chown munge:munge /run/munge || exit 1
exec chpst -u munge /usr/sbin/munged --foreground --key-file=$munge_key --seed-file=/run/munge/munged.seed \
    --pid-file=/run/munge/munged.pid --socket=/run/munge/munge.socket.2 ${address:+--origin=$address}
EOF
    if [ "$slurm" = head ]; then
        mkdir -p "$init_dir/slurmctld"
        cat > "$init_dir/slurmctld/run" <<EOF
#!/bin/sh
exec 2>&1
[ -S /run/munge/munge.socket.2 ] && [ -s /etc/slurm/slurm.conf ] && [ -d $slurm_dir/state ] || exit 1
exec /usr/sbin/slurmctld -D
EOF
    else
        mkdir -p "$init_dir/slurmd"
        cat > "$init_dir/slurmd/run" <<EOF
#!/bin/sh
exec 2>&1
name=\$(hostname)
[ -S /run/munge/munge.socket.2 ] && grep -q "^NodeName=\$name " /etc/slurm/slurm.conf 2>/dev/null || exit 1
mkdir -p /run/slurmd || exit 1
exec /usr/sbin/slurmd -D -N "\$name"
EOF
    fi
    chmod 0755 "$init_dir"/*/run
fi
