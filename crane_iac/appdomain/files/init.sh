#!/bin/sh
# crane's init for an app domain's container: PID 1, on this host's / read-only with tmpfs at /run, /root, /tmp,
# /var/log and /var/tmp. It lets in the key in CRANE_AUTHORIZED_KEY (crane's ssh_key, as a public key line), makes
# sshd's host key and configuration under /run/crane/ssh, and execs runsvdir, which supervises sshd and, as PID 1,
# reaps every orphan (runsvdir waits for any child, not only its own runsv; Debian's runit is installed for the
# services the playbooks start anyway, so no second init is needed: tini is not what the roles use).
# The playbooks' services (runsv started detached) are not runsvdir's: they live in /run/crane/services.
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

fail() {
    echo "crane init: $*" >&2
    exit 1
}

ssh_dir=/run/crane/ssh
init_dir=/run/crane/init  # runsvdir's services: sshd only
key=${CRANE_AUTHORIZED_KEY:-}
unset CRANE_AUTHORIZED_KEY CRANE_INIT  # (crane passes this script itself in CRANE_INIT)
[ -n "$key" ] || fail "CRANE_AUTHORIZED_KEY is empty: no one could log in, so the container stops here"

# a fresh tmpfs may be open to all; sshd (StrictModes) wants root's directories closed to others
chmod 0755 /run /root
chmod 1777 /tmp /var/tmp
mkdir -p /run/crane /run/crane/services /var/log/crane "$init_dir/sshd"
mkdir -p -m 0755 /run/sshd  # sshd's privilege separation directory
mkdir -p -m 0700 "$ssh_dir"

printf '%s\n' "$key" > "$ssh_dir/authorized_keys"
chmod 0600 "$ssh_dir/authorized_keys"
[ -f "$ssh_dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N "" -C "" -f "$ssh_dir/ssh_host_ed25519_key" \
    || fail "ssh-keygen could not make the host key"

cat > "$ssh_dir/sshd_config" <<EOF
# written by crane's init: root logs in with crane's key only
Port 22
HostKey $ssh_dir/ssh_host_ed25519_key
AuthorizedKeysFile $ssh_dir/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PidFile /run/crane/sshd.pid
PrintMotd no
PrintLastLog no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -t -f "$ssh_dir/sshd_config" || fail "sshd refuses $ssh_dir/sshd_config"

cat > "$init_dir/sshd/run" <<EOF
#!/bin/sh
exec 2>&1
exec /usr/sbin/sshd -D -e -f $ssh_dir/sshd_config
EOF
chmod 0755 "$init_dir/sshd/run"

# runsvdir skips a directory changed within the current second and looks again a second later: backdated, sshd
# starts at once (a new host answers about a second sooner)
touch -d @0 "$init_dir"
exec runsvdir -P "$init_dir"
