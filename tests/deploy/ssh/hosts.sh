# shellcheck shell=bash disable=SC2016  # the commands run inside the namespaces are single-quoted
# Simulated hosts for tests/deploy/test_ssh.sh (sourced, not run). Each host is a network
# namespace with its own address on a bridge the test creates (so nftables rules can be applied
# for real: a `policy drop` table only drops traffic to that host), running sshd in a private
# mount namespace: /etc and /var/lib are overlays on the machine's (useradd and the units stay
# per host), /opt and /srv are empty directories, /usr/bin/systemctl is the test stand-in
# tests/deploy/ssh/systemctl. The machine itself (the bridge address) plays "the internet".
# Needs: $W (work directory), $REPO. Sets HOSTS (addresses), HOST_NETNS, HOST_NET_PREFIX.

HOST_NET_PREFIX=${STRATA_SSH_TEST_NET:-10.254.213}  # a /24 nothing else here uses
HOST_BRIDGE="stbr$$"
HOST_NETNS=() HOSTS=() HOST_GEN=0
SSH_PORT=2222  # not 22: the deploy's --port and the firewall's ssh rule are exercised

# hosts_up N: N hosts (10.254.213.2, .3, ...) with sshd listening, key $W/id.
hosts_up() {
  local n=$1 i ns h d
  HOST_GEN=$((HOST_GEN + 1))  # each set of hosts starts from empty directories
  [[ -f $W/id ]] || {
    ssh-keygen -q -t ed25519 -N "" -f "$W/id" -C test_ssh
    ssh-keygen -q -t ed25519 -N "" -f "$W/host_key"
    cp "$W/id.pub" "$W/authorized_keys"
  }
  if ip -4 route show | grep -q "^$HOST_NET_PREFIX\."; then
    fail "$HOST_NET_PREFIX.0/24 is in use here: set STRATA_SSH_TEST_NET to a free /24 prefix"
  fi
  ip link add "$HOST_BRIDGE" type bridge
  ip addr add "$HOST_NET_PREFIX.1/24" dev "$HOST_BRIDGE"
  ip link set "$HOST_BRIDGE" up
  mkdir -p /run/sshd
  for ((i = 0; i < n; i++)); do
    ns="strata-ssh$$-$HOST_GEN-$i" h="$HOST_NET_PREFIX.$((i + 2))" d="$W/hosts$HOST_GEN/host$i"
    ip netns add "$ns"
    HOST_NETNS+=("$ns") HOSTS+=("$h")
    # Named per set of hosts: a namespace's veth outlives `ip netns del` until the kernel has
    # torn the namespace down (after its last process is reaped), so a second set must not
    # reuse the first one's names.
    ip link add "sv$$-$HOST_GEN-$i" type veth peer name eth0 netns "$ns"
    ip link set "sv$$-$HOST_GEN-$i" master "$HOST_BRIDGE" up
    ip -n "$ns" addr add "$h/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    mkdir -p "$d/etc-up" "$d/etc-work" "$d/lib-up" "$d/lib-work" "$d/opt" "$d/srv"
    cat >"$d/sshd_config" <<EOF
ListenAddress $h:$SSH_PORT
HostKey $W/host_key
AuthorizedKeysFile $W/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile $d/sshd.pid
MaxSessions 64
MaxStartups 64
EOF
    ip netns exec "$ns" unshare --mount --propagation private -- bash -c '
      set -e
      d=$1 repo=$2
      mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/etc-up,workdir=$d/etc-work" /etc
      mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$d/lib-up,workdir=$d/lib-work" /var/lib
      mount --bind "$d/opt" /opt
      mount --bind "$d/srv" /srv
      mount --bind "$repo/tests/deploy/ssh/systemctl" /usr/bin/systemctl
      exec /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log"' _ "$d" "$REPO" &
    disown  # hosts_down kills it (no job report)
  done
  for h in "${HOSTS[@]}"; do
    for _ in $(seq 100); do on "$h" true 2>/dev/null && break; sleep 0.1; done
    on "$h" true || fail "sshd on $h does not answer"
  done
}

# hosts_down: every process in the hosts' network namespaces is ours: killed; then the
# namespaces and the bridge go (the veth pairs with them).
hosts_down() {
  local ns ino p inos=()
  for ns in "${HOST_NETNS[@]}"; do
    [[ -e /run/netns/$ns ]] && inos+=("$(stat -L -c %i "/run/netns/$ns")")
  done
  if ((${#inos[@]})); then
    for p in /proc/[0-9]*; do
      ino=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
      [[ " ${inos[*]} " == *" $ino "* ]] && { kill -KILL "${p#/proc/}" 2>/dev/null || true; }
    done
  fi
  for ns in "${HOST_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "$HOST_BRIDGE" 2>/dev/null || true
  # Wait (bounded) until the kernel has removed the hosts' veths, i.e. torn the namespaces down.
  for _ in $(seq 50); do
    ip -o link show | grep -q "sv$$-$HOST_GEN-" || break
    sleep 0.1
  done
  HOST_NETNS=() HOSTS=()
  return 0
}

# in_host I CMD...: runs CMD in host I's network namespace (not over ssh: a "cluster address").
in_host() { local i=$1; shift; ip netns exec "${HOST_NETNS[$i]}" "$@"; }
