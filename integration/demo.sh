#!/bin/bash
# demo.sh -- coredhcp-failover as a single, durable DHCPv4 server, shown with
# real clients in network namespaces (run by `make demo`, as root).
#
# It builds a LAN (a bridge in namespace cfd-sw), a server namespace cfd-srv
# (192.0.2.1/24) and six client namespaces, each with its own MAC: three run
# ISC dhclient, three run busybox udhcpc. It shows who got which address and
# the server's lease database, kills the server with SIGKILL, shows that the
# leases survived, restarts it, and shows that every client keeps its address
# when it renews. Everything is removed on exit, even after an error.
#
# Env: COREDHCP_FAILOVER_BIN (default: bin/coredhcp-failover of this repo)
#      KEEP=1 keeps the work directory (configs, logs, lease DB)
set -euo pipefail

P=cfd                                        # prefix of every namespace made here
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${COREDHCP_FAILOVER_BIN:-$REPO/bin/coredhcp-failover}
CLIENTS=(dh1 dh2 dh3 ud1 ud2 ud3)
WORK=""
SRV_PID=""
EV="" IP="" LEASE=0 AT=0                     # set by wait_bound
declare -A PID=()                            # client name -> pid of its running process

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die()  { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces): sudo make demo"
[ -x "$BIN" ] || die "$BIN not found: run make build first"

# ------------------------------------------------------------------ tools
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v dhclient >/dev/null || need+=(isc-dhcp-client)
command -v udhcpc >/dev/null || need+=(udhcpc)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ ${#need[@]} -gt 0 ]; then
  say "Installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ cleanup
remove_namespaces() {
  local ns pid
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns"
  done
}
cleanup() {
  local rc=$?
  set +e
  local pids=("${PID[@]}")
  [ -z "$SRV_PID" ] || pids+=("$SRV_PID")
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  remove_namespaces
  if [ -n "$WORK" ]; then
    if [ "${KEEP:-0}" = 1 ] || [ $rc != 0 ]; then
      echo "work directory kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  [ $rc = 0 ] || echo "demo FAILED (exit $rc)" >&2
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ lab
mkns() {
  ip netns add "$1"
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set dev lo up
}
# attach NAME MAC [CIDR]: namespace $P-NAME, interface "lan" bridged to the LAN
attach() {
  mkns "$P-$1"
  ip link add lan netns "$P-$1" address "$2" type veth peer name "$1" netns "$P-sw"
  ip -n "$P-sw" link set dev "$1" master br0
  ip -n "$P-sw" link set dev "$1" up
  [ -z "${3:-}" ] || ip -n "$P-$1" addr add "$3" dev lan
  ip -n "$P-$1" link set dev lan up
}

# hook script shared by both clients: log the event, set the address
write_hook() {
  cat > "$WORK/hook.sh" <<'EOF'
#!/bin/sh
# dhclient passes $reason and new_*; udhcpc passes the event as $1 and ip, mask, lease, serverid.
if [ -n "${reason:-}" ]; then
  ev=$reason ip=${new_ip_address:-} mask=${new_subnet_mask:-} lease=${new_dhcp_lease_time:-}
else
  ev=$1
fi
echo "ev=$ev ip=${ip:-} lease=${lease:-} at=$(date +%s)" >> "$EVENTS"
case $ev in
BOUND|RENEW|REBIND|REBOOT|bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
PREINIT) ip link set dev "$interface" up ;;
RELEASE|EXPIRE|FAIL|STOP|deconfig) ip -4 addr flush dev "$interface" ;;
esac
EOF
  chmod +x "$WORK/hook.sh"
}

start_server() {
  ip netns exec $P-srv "$BIN" -c "$WORK/demo.yaml" -L info >> "$WORK/server.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 100); do
    if ip netns exec $P-srv ss -Huapn 2>/dev/null | grep -q "pid=$SRV_PID,"; then
      note "server running, pid $SRV_PID, listening on 0.0.0.0:67 in $P-srv"
      return
    fi
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$WORK/server.log" >&2
  die "server did not bind UDP port 67"
}

# start_client NAME: dhclient for dh*, udhcpc for ud*; both stay in the foreground
start_client() {
  local c=$1
  if [[ $c == dh* ]]; then
    [ -f "$WORK/$c.leases" ] || : > "$WORK/$c.leases"
    printf 'initial-interval 1;\nbackoff-cutoff 2;\nsend host-name "%s";\n' "$c" > "$WORK/$c.conf"
    # dhclient hands its script a clean environment, so EVENTS rides in a wrapper
    printf '#!/bin/sh\nEVENTS=%s exec %s "$@"\n' "$WORK/$c.events" "$WORK/hook.sh" > "$WORK/$c.sh"
    chmod +x "$WORK/$c.sh"
    ip netns exec "$P-$c" dhclient -d -cf "$WORK/$c.conf" -lf "$WORK/$c.leases" -pf "$WORK/$c.pid" \
      -sf "$WORK/$c.sh" lan >> "$WORK/$c.log" 2>&1 &
  else
    EVENTS="$WORK/$c.events" ip netns exec "$P-$c" udhcpc -f -i lan -s "$WORK/hook.sh" -t 30 -T 1 -A 1 \
      -x "hostname:$c" >> "$WORK/$c.log" 2>&1 &
  fi
  PID[$c]=$!
}

# count of lines in a client's event log
nevents() { if [ -f "$WORK/$1.events" ]; then wc -l < "$WORK/$1.events"; else echo 0; fi; }

# wait_bound NAME SINCE: wait (20 s) for a binding event after line SINCE of the
# client's event log; sets EV IP LEASE AT
wait_bound() {
  local line
  for _ in $(seq 200); do
    line=$(tail -n +"$(( $2 + 1 ))" "$WORK/$1.events" 2>/dev/null |
      grep -iE '^ev=(bound|renew|rebind|reboot) ' | head -1 || true)
    if [ -n "$line" ]; then
      read -r EV IP LEASE AT <<< "$(sed -E 's/ev=([^ ]*) ip=([^ ]*) lease=([^ ]*) at=([^ ]*)/\1 \2 \3 \4/' <<< "$line")"
      return
    fi
    sleep 0.1
  done
  tail -5 "$WORK/$1.log" >&2
  die "client $1 got no lease within 20 s"
}

mac_of() { ip -n "$P-$1" link show lan | awk '/link\/ether/ {print $2}'; }

show_db() {
  sqlite3 -readonly -header -column "$WORK/leases.db" \
    "SELECT address, state, hwaddr, client_id, hostname,
            datetime(starts, 'unixepoch') AS starts_utc, datetime(ends, 'unixepoch') AS ends_utc
       FROM leases WHERE state <> 'free' ORDER BY hwaddr" | sed 's/^/   /'
}

# ------------------------------------------------------------------ the demo
say "Building the lab (namespaces $P-*)"
remove_namespaces
WORK=$(mktemp -d /tmp/cfd.XXXXXX)
cat <<EOF
   namespace $P-sw holds bridge br0, the LAN (192.0.2.0/24):

     $P-srv  192.0.2.1/24   coredhcp-failover
       |
     [br0] --- $P-dh1  $P-dh2  $P-dh3   (ISC dhclient)
           --- $P-ud1  $P-ud2  $P-ud3   (busybox udhcpc)
EOF
mkns $P-sw
ip -n $P-sw link add br0 type bridge stp_state 0 forward_delay 0
ip -n $P-sw link set dev br0 up
attach srv 02:cf:d0:00:00:01 192.0.2.1/24
n=1
for c in "${CLIENTS[@]}"; do
  n=$((n + 1))
  attach "$c" "02:cf:d0:00:00:0$n"
done
write_hook

say "Starting the server"
# The repository's example config, moved into the namespace: listen on "lan"
# and keep the lease DB in the work directory. If the example is missing (or
# these two edits do not apply), an equivalent config is written instead.
if [ -f "$REPO/coredhcp-failover.yaml" ]; then
  sed -e 's/0\.0\.0\.0%[A-Za-z0-9_.-]*/0.0.0.0%lan/' -e "s#db=[^ ]*#db=$WORK/leases.db#" \
    "$REPO/coredhcp-failover.yaml" > "$WORK/demo.yaml"
fi
if ! grep -q "db=$WORK/leases.db" "$WORK/demo.yaml" 2>/dev/null || ! grep -q '%lan' "$WORK/demo.yaml"; then
  cat > "$WORK/demo.yaml" <<EOF
server4:
  listen: ["0.0.0.0%lan"]
  plugins:
    - server_id: 192.0.2.1
    - failover: db=$WORK/leases.db pool=192.0.2.100-192.0.2.199 lease-time=1h
    - router: 192.0.2.1
    - netmask: 255.255.255.0
    - dns: 192.0.2.53
EOF
fi
note "config ($WORK/demo.yaml: coredhcp-failover.yaml with listen and db adapted, comments left out):"
grep -vE '^[[:space:]]*(#|$)' "$WORK/demo.yaml" | sed 's/^/   | /'
start_server

say "Six clients ask for an address at once"
for c in "${CLIENTS[@]}"; do start_client "$c"; done
declare -A ADDR=()
printf '   %-6s %-9s %-18s %-14s %s\n' CLIENT SOFTWARE MAC ADDRESS "LEASE ENDS (UTC)"
for c in "${CLIENTS[@]}"; do
  wait_bound "$c" 0
  ADDR[$c]=$IP
  sw=udhcpc; [[ $c == dh* ]] && sw=dhclient
  printf '   %-6s %-9s %-18s %-14s %s\n' "$c" "$sw" "$(mac_of "$c")" "$IP" "$(date -u -d "@$((AT + LEASE))" '+%F %T')"
done
if [ "$(printf '%s\n' "${ADDR[@]}" | sort -u | wc -l)" != ${#CLIENTS[@]} ]; then
  die "two clients got the same address"
fi
note "six clients, six distinct addresses"

say "The server's lease database (view 'leases', rows not free)"
show_db

say "kill -9 the server (pid $SRV_PID): no shutdown, no flush"
kill -KILL "$SRV_PID"
wait "$SRV_PID" 2>/dev/null || true
SRV_PID=""
note "The database as the crash left it (every ACK was committed before it was sent):"
show_db
for c in "${CLIENTS[@]}"; do
  st=$(sqlite3 -readonly "$WORK/leases.db" \
    "SELECT state FROM leases WHERE address = '${ADDR[$c]}' AND hwaddr = '$(mac_of "$c")'")
  [ "$st" = active ] || die "lease of $c (${ADDR[$c]}) is '$st' after the crash, want active"
done
note "all six leases are there, active"

say "Restarting the server on the same database"
start_server

say "Every client renews: dhclient restarts from its lease file (INIT-REBOOT), udhcpc gets SIGUSR1 (RENEWING)"
printf '   %-6s %-14s %-14s %-8s %s\n' CLIENT BEFORE AFTER EVENT RESULT
for c in "${CLIENTS[@]}"; do
  since=$(nevents "$c")
  if [[ $c == dh* ]]; then
    kill -TERM "${PID[$c]}"; wait "${PID[$c]}" 2>/dev/null || true
    start_client "$c"
  else
    kill -USR1 "${PID[$c]}"
  fi
  wait_bound "$c" "$since"
  result="kept"; [ "$IP" = "${ADDR[$c]}" ] || result="CHANGED"
  printf '   %-6s %-14s %-14s %-8s %s\n' "$c" "${ADDR[$c]}" "$IP" "${EV,,}" "$result"
  [ "$result" = kept ] || die "$c changed address across the restart"
done

say "The database after the renewals (lease ends moved forward)"
show_db

say "dh3 releases its address (dhclient -r)"
kill -TERM "${PID[dh3]}"; wait "${PID[dh3]}" 2>/dev/null || true
unset 'PID[dh3]'
ip netns exec $P-dh3 dhclient -r -cf "$WORK/dh3.conf" -lf "$WORK/dh3.leases" -pf "$WORK/dh3-r.pid" \
  -sf "$WORK/dh3.sh" lan >> "$WORK/dh3.log" 2>&1
for _ in $(seq 50); do
  st=$(sqlite3 -readonly "$WORK/leases.db" "SELECT state FROM leases WHERE address = '${ADDR[dh3]}'")
  [ "$st" = active ] || break
  sleep 0.1
done
note "${ADDR[dh3]} is now: $st"

say "Stopping the server with SIGTERM"
kill -TERM "$SRV_PID"
rc=0; wait "$SRV_PID" || rc=$?
SRV_PID=""
note "server exited with status $rc"
say "Done; the lab is removed on exit"
