#!/bin/sh
# crane's init for an MPI cluster's node (head or compute): PID 1, on this host's / read-only with tmpfs at /run,
# /root, /tmp, /var/log and /var/tmp, and the cluster's shared directory at $CRANE_SHARED. It
#  - adds the cluster user ($CRANE_MPI_USER, uid/gid $CRANE_MPI_UID, home $CRANE_SHARED/home) to copies of the host's
#    /etc/passwd and /etc/group under /run, bind-mounted over the read-only ones (sshd and OpenMPI look the user up);
#  - makes the shared directory's layout: the user's home and the work directory;
#  - keeps the node's SSH host key in the shared directory ($CRANE_SHARED/.crane/hostkeys/$CRANE_NODE): it survives a
#    restart of the container (so the known_hosts the head's configuration run pinned stays true), and the head's
#    run reads every node's public host key from the disk, never from the network;
#  - lets root in with crane's key only (CRANE_AUTHORIZED_KEY) and the cluster user with the keys in its home's
#    .ssh/authorized_keys, then execs runsvdir, which supervises sshd and reaps orphans (as the app domain's init);
#  - in a cluster with Slurm, adds munged and slurmctld or slurmd to runsvdir's services (files/slurm-init.sh).
# Done at every start: a restarted node is whole again without a configuration run.
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

fail() {
    echo "crane init: $*" >&2
    exit 1
}

key=${CRANE_AUTHORIZED_KEY:-}
node=${CRANE_NODE:-}
user=${CRANE_MPI_USER:-}
uid=${CRANE_MPI_UID:-}
shared=${CRANE_SHARED:-}
slurm=${CRANE_SLURM:-}  # "head" or "node" in a cluster with Slurm, whose part of the init is CRANE_SLURM_INIT
slurm_init=${CRANE_SLURM_INIT:-}
unset CRANE_AUTHORIZED_KEY CRANE_INIT CRANE_NODE CRANE_MPI_USER CRANE_MPI_UID CRANE_SHARED CRANE_SLURM CRANE_SLURM_INIT
[ -n "$key" ] || fail "CRANE_AUTHORIZED_KEY is empty: no one could log in, so the container stops here"
[ -n "$node" ] && [ -n "$user" ] && [ -n "$uid" ] && [ -d "$shared" ] \
    || fail "CRANE_NODE, CRANE_MPI_USER, CRANE_MPI_UID and CRANE_SHARED (a directory) must be given"

ssh_dir=/run/crane/ssh
init_dir=/run/crane/init  # runsvdir's services: sshd (and Slurm's daemons)
chmod 0755 /run /root
chmod 1777 /tmp /var/tmp
mkdir -p /run/crane /run/crane/services /var/log/crane "$init_dir/sshd"
mkdir -p -m 0755 /run/sshd
mkdir -p -m 0700 "$ssh_dir"

# the cluster user, on top of the host's own accounts (a host account of the same name is shadowed)
grep -v "^$user:" /etc/passwd > /run/crane/passwd
printf '%s:x:%s:%s:MPI cluster user:%s/home:/bin/bash\n' "$user" "$uid" "$uid" "$shared" >> /run/crane/passwd
grep -v "^$user:" /etc/group > /run/crane/group
printf '%s:x:%s:\n' "$user" "$uid" >> /run/crane/group
chmod 0644 /run/crane/passwd /run/crane/group
mount --bind /run/crane/passwd /etc/passwd || fail "cannot bind-mount the cluster's /etc/passwd"
mount --bind /run/crane/group /etc/group || fail "cannot bind-mount the cluster's /etc/group"

# the shared directory: sshd (StrictModes) wants the home's parents closed to others
chmod 0755 "$shared"
mkdir -p "$shared/home" "$shared/work" "$shared/.crane/hostkeys"
chown "$uid:$uid" "$shared/home" "$shared/work"
chmod 0700 "$shared/home"
chmod 0755 "$shared/work" "$shared/.crane" "$shared/.crane/hostkeys"
hostkey="$shared/.crane/hostkeys/$node"
if [ ! -s "$hostkey" ] || [ ! -s "$hostkey.pub" ]; then
    rm -f "$hostkey" "$hostkey.pub" "$hostkey.tmp" "$hostkey.tmp.pub"
    ssh-keygen -q -t ed25519 -N "" -C "$node" -f "$hostkey.tmp" || fail "ssh-keygen could not make the host key"
    mv "$hostkey.tmp" "$hostkey"
    mv "$hostkey.tmp.pub" "$hostkey.pub"  # last: the head's run waits for the .pub
fi

printf '%s\n' "$key" > "$ssh_dir/authorized_keys"
chmod 0600 "$ssh_dir/authorized_keys"
cat > "$ssh_dir/sshd_config" <<EOF
# written by crane's init: root logs in with crane's key only, $user with the keys of its home
Port 22
HostKey $hostkey
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin prohibit-password
AllowUsers root $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PidFile /run/crane/sshd.pid
PrintMotd no
PrintLastLog no
Subsystem sftp /usr/lib/openssh/sftp-server
Match User root
    AuthorizedKeysFile $ssh_dir/authorized_keys
EOF
/usr/sbin/sshd -t -f "$ssh_dir/sshd_config" || fail "sshd refuses $ssh_dir/sshd_config"

cat > "$init_dir/sshd/run" <<EOF
#!/bin/sh
exec 2>&1
exec /usr/sbin/sshd -D -e -f $ssh_dir/sshd_config
EOF
chmod 0755 "$init_dir/sshd/run"
if [ -n "$slurm" ]; then  # Slurm's daemons: files/slurm-init.sh, passed in base64 as this script is
    eval "$(printf %s "$slurm_init" | base64 -d)"
fi
touch -d @0 "$init_dir"  # runsvdir starts sshd at once (see the app domain's init)
exec runsvdir -P "$init_dir"
