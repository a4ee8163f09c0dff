#!/usr/bin/env bash
# The main job, end to end, on nothing but this machine:
#   a "host" network namespace with a bridge, a libvirt network (libvirt's test driver) that
#   libvirt does not serve itself, virtmasq in private mode serving it, and a client in its own
#   namespace getting a lease. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${VIRTMASQ_BIN:-target/debug/virtmasq}
[ -x "$BIN" ] || cargo build --locked
[ "$(id -u)" -eq 0 ] || { echo "demo: needs root (network namespaces)" >&2; exit 1; }

ID=$$
HOST=vqdemo-h$ID
CLIENT=vqdemo-c$ID
BR=vqdemo0
WORK=$(mktemp -d /tmp/virtmasq-demo.XXXXXX)
chmod 0755 "$WORK"
AGENT=

cleanup() {
  set +e
  [ -n "$AGENT" ] && kill "$AGENT" 2>/dev/null && wait "$AGENT" 2>/dev/null
  ip netns del "$CLIENT" 2>/dev/null
  ip netns del "$HOST" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A host namespace with bridge $BR (10.213.0.1/24) and a client on it"
ip netns add "$HOST"
ip netns add "$CLIENT"
ip -n "$HOST" link set lo up
ip -n "$HOST" link add "$BR" type bridge
ip -n "$HOST" addr add 10.213.0.1/24 dev "$BR"
ip -n "$HOST" link set "$BR" up
ip -n "$HOST" link add vqdemo-p type veth peer name eth0 netns "$CLIENT"
ip -n "$HOST" link set vqdemo-p master "$BR" up
ip -n "$CLIENT" link set eth0 address 52:54:00:de:40:01 up
ip -n "$CLIENT" link set lo up

step "A libvirt network 'demo' that libvirt does not serve itself; its DHCP intent in metadata"
cat > "$WORK/node.xml" <<XML
<node>
  <network>
    <name>demo</name>
    <bridge name='$BR'/>
    <dns enable='no'/>
    <ip address='10.213.0.1' prefix='24'/>
    <metadata>
      <virtmasq:dhcp xmlns:virtmasq="http://virtmasq.org/xmlns/network/1.0" dns="no">
        <virtmasq:range start="10.213.0.100" end="10.213.0.150" lease="1h"/>
        <virtmasq:host mac="52:54:00:de:40:01" ip="10.213.0.42" name="demo-guest"/>
      </virtmasq:dhcp>
    </metadata>
  </network>
</node>
XML
virsh -c "test://$WORK/node.xml" net-list --all

cat > "$WORK/virtmasq.toml" <<TOML
# The demo shows private mode; it never touches this machine's own dnsmasq, if it has one.
mode = "private"
[paths]
state_dir = "$WORK/state"
run_dir = "$WORK/run"
conf_dir = "$WORK/dnsmasq.d"
[libvirt]
uri = "test://$WORK/node.xml"
[dnsmasq]
no_ping = true
TOML

step "What virtmasq will write for it (virtmasq render demo)"
"$BIN" --config "$WORK/virtmasq.toml" render demo

step "virtmasq daemon, in the host namespace (private mode)"
ip netns exec "$HOST" "$BIN" --config "$WORK/virtmasq.toml" daemon &
AGENT=$!
for _ in $(seq 50); do
  [ -s "$WORK/run/demo/pid/dnsmasq.pid" ] && break
  sleep 0.1
done
sleep 0.3
echo "private dnsmasq pid: $(cat "$WORK/run/demo/pid/dnsmasq.pid")"

step "The client asks for a lease (busybox udhcpc)"
cat > "$WORK/udhcpc.sh" <<'SH'
#!/bin/sh
[ "$1" = bound ] && echo "lease: ip=$ip router=${router:-none} server=$serverid lease=${lease}s"
exit 0
SH
chmod +x "$WORK/udhcpc.sh"
ip netns exec "$CLIENT" timeout 15 busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s "$WORK/udhcpc.sh"

step "The lease as dnsmasq recorded it"
cat "$WORK/state/leases/demo.leases"

step "Stopping the agent stops its dnsmasq"
kill "$AGENT"; wait "$AGENT" || true; AGENT=
if pgrep -f "$WORK/run/demo/dnsmasq.conf" >/dev/null; then
  echo "a dnsmasq is still running" >&2; exit 1
fi
echo "no dnsmasq of ours is left running. Demo done."
