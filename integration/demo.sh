#!/bin/bash
# demo.sh -- a coredhcp-failover pair serving real clients in network
# namespaces (run by `make demo`, as root).
#
# It builds a LAN (a bridge in namespace cfd-sw), two servers -- the primary
# cfd-p (192.0.2.1) and the secondary cfd-s (192.0.2.2), in a failover
# relationship over TCP 647 -- and client namespaces with their own MACs
# (ISC dhclient and busybox udhcpc). It shows the pair reach NORMAL and share
# the clients by hash, kills the primary with SIGKILL, shows the secondary
# serving the primary's clients and a new one, has the operator declare the
# primary down, restarts the primary, and shows the pair back in NORMAL with
# every lease on both servers; then a planned maintenance of the secondary.
# Along the way it shows `failoverctl status` of both servers (states,
# countdowns, pool usage) and their Prometheus metrics. Everything is
# removed on exit, even after an error.
#
# Env: COREDHCP_FAILOVER_BIN (default: bin/coredhcp-failover of this repo)
#      KEEP=1 keeps the work directory (configs, logs, lease databases)
set -euo pipefail

P=cfd                                        # prefix of every namespace made here
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${COREDHCP_FAILOVER_BIN:-$REPO/bin/coredhcp-failover}
CTL=$(dirname "$BIN")/failoverctl
CLIENTS=(dh1 dh2 dh3 dh4 ud1 ud2 ud3 ud4)
MCLT=15
WORK=""
IP="" LEASE=0 SID=""                     # set by wait_bound
declare -A PID=()                            # client name -> pid of its running process
declare -A SRV=()                            # server (p, s) -> pid

# Bold headings on a terminal only: no raw escapes in a log or a pipe.
if [ -t 1 ]; then BOLD=$'\033[1m' UNDER=$'\033[4m' PLAIN=$'\033[0m'; else BOLD="" UNDER="" PLAIN=""; fi
say()  { printf '\n%s== %s%s\n' "$BOLD" "$*" "$PLAIN"; }
now()  { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
note() { printf '   %s\n' "$*"; }
die()  { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces): sudo make demo"
[ -x "$BIN" ] || die "$BIN not found: run make build first"
[ -x "$CTL" ] || die "$CTL not found: run make build first"

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
  local pids=("${PID[@]}" "${SRV[@]}")
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
  serverid=${new_dhcp_server_identifier:-}
else
  ev=$1
fi
echo "ev=$ev ip=${ip:-} lease=${lease:-} sid=${serverid:-} at=$(date +%s)" >> "$EVENTS"
case $ev in
BOUND|RENEW|REBIND|REBOOT|bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
PREINIT) ip link set dev "$interface" up ;;
RELEASE|EXPIRE|FAIL|STOP|deconfig) ip -4 addr flush dev "$interface" ;;
esac
EOF
  chmod +x "$WORK/hook.sh"
}

# server_config p|s: the pair's configuration, as the documented example
# coredhcp-failover.yaml and the leasesync README give it, with this lab's
# interface, databases in the work directory, control sockets and a short MCLT.
server_config() {
  local me=$1 role addr peer extra
  if [ "$me" = p ]; then role=primary addr=192.0.2.1 peer=192.0.2.2 extra="mclt=$MCLT split=128"
  else role=secondary addr=192.0.2.2 peer=192.0.2.1 extra=""; fi
  cat > "$WORK/$me.yaml" <<EOF
server4:
  listen: ["0.0.0.0%lan"]
  plugins:
    - server_id: $addr
    - leasesync: name=lan1 role=$role address=$addr peer=$peer $extra max-response-delay=5 control=$WORK/$me.sock metrics=127.0.0.1:9647
    - failover: name=lan1 db=$WORK/$me.db pool=192.0.2.100-192.0.2.199 lease-time=10m
    - router: 192.0.2.1
    - netmask: 255.255.255.0
    - dns: 192.0.2.53
EOF
}

# start_server p|s: run that server, wait until it has bound UDP port 67
start_server() {
  local n=$1
  ip netns exec "$P-$n" "$BIN" -c "$WORK/$n.yaml" -L info >> "$WORK/$n.log" 2>&1 &
  SRV[$n]=$!
  for _ in $(seq 100); do
    if ip netns exec "$P-$n" ss -Huapn 2>/dev/null | grep -q "pid=${SRV[$n]},"; then
      return
    fi
    kill -0 "${SRV[$n]}" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$WORK/$n.log" >&2
  die "server $n did not bind UDP port 67"
}

ctl() { "$CTL" -s "$WORK/$1.sock" --yes "${@:2}"; }
state_of() { "$CTL" -s "$WORK/$1.sock" --json status 2>/dev/null | sed -n 's/.*"state": "\([^"]*\)".*/\1/p' | sed -n 1p; }
show_status() { ctl "$1" status | sed 's/^/   /'; }
# show_both: failoverctl status of each server, or why there is none
show_both() {
  local n
  for n in p s; do
    if [ -n "${SRV[$n]:-}" ]; then
      printf '   %s%s: bin/failoverctl -s %s status%s\n' "$UNDER" "$([ $n = p ] && echo primary || echo secondary)" "$WORK/$n.sock" "$PLAIN"
      show_status "$n"
    else
      printf '   %s%s%s: not running\n' "$UNDER" "$([ $n = p ] && echo primary || echo secondary)" "$PLAIN"
    fi
  done
}
# metrics p|s: the server's /metrics, fetched inside its namespace (it
# listens on that namespace's 127.0.0.1:9647)
metrics() {
  ip netns exec "$P-$1" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9647 &&
    printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3'
}
# show_metrics p|s: the states set to 1, and a few others worth a graph
show_metrics() {
  note "curl http://127.0.0.1:9647/metrics on the $([ "$1" = p ] && echo primary || echo secondary) (excerpt):"
  metrics "$1" | grep -E '^coredhcp_failover_(state\{.* 1$|peer_connected|serving|pool_free_addresses|dhcp_answers_total\{.*ack|binding_updates_(sent|acked)_total)' |
    sed 's/relationship="lan1",//; s/,relationship="lan1"//; s/^/     /'
}

# wait_states STATE_P STATE_S SECONDS ("-": do not look at that server)
wait_states() {
  for _ in $(seq $(( $3 * 10 ))); do
    if { [ "$1" = - ] || [ "$(state_of p)" = "$1" ]; } && { [ "$2" = - ] || [ "$(state_of s)" = "$2" ]; }; then
      return
    fi
    sleep 0.1
  done
  die "waiting for primary=$1 secondary=$2: the primary is '$(state_of p)', the secondary '$(state_of s)'"
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

# wait_bound NAME SINCE: wait (30 s) for a binding event after line SINCE of
# the client's event log; sets IP LEASE SID
wait_bound() {
  local line
  for _ in $(seq 300); do
    line=$(tail -n +"$(( $2 + 1 ))" "$WORK/$1.events" 2>/dev/null |
      grep -iE '^ev=(bound|renew|rebind|reboot) ' | head -1 || true)
    if [ -n "$line" ]; then
      read -r _ IP LEASE SID _ <<< "$(sed -E 's/ev=([^ ]*) ip=([^ ]*) lease=([^ ]*) sid=([^ ]*) at=([^ ]*)/\1 \2 \3 \4 \5/' <<< "$line")"
      return
    fi
    sleep 0.1
  done
  tail -5 "$WORK/$1.log" >&2
  die "client $1 got no lease within 30 s"
}

mac_of() { ip -n "$P-$1" link show lan | awk '/link\/ether/ {print $2}'; }
server_name() { case $1 in 192.0.2.1) echo primary ;; 192.0.2.2) echo secondary ;; *) echo "?$1" ;; esac; }

# show_db p|s: a server's active leases
show_db() {
  sqlite3 -readonly -header -column "$WORK/$1.db" \
    "SELECT address, hwaddr, hostname, datetime(ends, 'unixepoch') AS ends_utc
       FROM leases WHERE state = 'active' ORDER BY address" | sed 's/^/   /'
}
active_of() { sqlite3 -readonly "$WORK/$1.db" "SELECT address || ' ' || hwaddr FROM leases WHERE state = 'active' ORDER BY address"; }

# ------------------------------------------------------------------ the demo
say "Building the lab (namespaces $P-*)"
remove_namespaces
WORK=$(mktemp -d /tmp/cfd.XXXXXX)
cat <<EOF
   namespace $P-sw holds bridge br0, the LAN (192.0.2.0/24):

     $P-p  192.0.2.1  primary     <-- failover, TCP 647 -->   $P-s  192.0.2.2  secondary
       |                                                        |
     [br0] --- $P-dh1 .. $P-dh4   (ISC dhclient)
           --- $P-ud1 .. $P-ud4   (busybox udhcpc)
EOF
mkns $P-sw
ip -n $P-sw link add br0 type bridge stp_state 0 forward_delay 0
ip -n $P-sw link set dev br0 up
attach p 02:cf:d0:00:00:01 192.0.2.1/24
attach s 02:cf:d0:00:00:02 192.0.2.2/24
n=2
for c in "${CLIENTS[@]}" late; do
  n=$((n + 1))
  attach "$c" "$(printf '02:cf:d0:00:00:%02x' $n)"
done
write_hook

say "Starting the pair"
server_config p
server_config s
note "the primary's configuration ($WORK/p.yaml); the secondary's differs in role, addresses, and takes mclt and split from the primary:"
sed 's/^/   | /' "$WORK/p.yaml"
start_server p
start_server s
wait_states normal normal 30
note "both servers are in NORMAL; the primary gave the secondary half of the free addresses"
show_both
show_metrics p

say "Eight clients ask for an address at once"
for c in "${CLIENTS[@]}"; do start_client "$c"; done
declare -A ADDR=() BY=()
printf '   %-6s %-9s %-18s %-14s %-10s %s\n' CLIENT SOFTWARE MAC ADDRESS "SERVED BY" "LEASE"
for c in "${CLIENTS[@]}"; do
  wait_bound "$c" 0
  ADDR[$c]=$IP
  BY[$c]=$(server_name "$SID")
  sw=udhcpc; [[ $c == dh* ]] && sw=dhclient
  printf '   %-6s %-9s %-18s %-14s %-10s %ss\n' "$c" "$sw" "$(mac_of "$c")" "$IP" "${BY[$c]}" "$LEASE"
done
if [ "$(printf '%s\n' "${ADDR[@]}" | sort -u | wc -l)" != ${#CLIENTS[@]} ]; then
  die "two clients got the same address"
fi
note "eight distinct addresses; each client was answered by the server whose RFC 3074 hash bucket holds it"
note "first leases are $MCLT s (the MCLT): the peer has not acknowledged anything longer yet"
for _ in $(seq 50); do [ "$(active_of p)" = "$(active_of s)" ] && break; sleep 0.1; done
[ "$(active_of p)" = "$(active_of s)" ] || die "the two databases differ"
note "both lease databases hold the same eight active leases (a host name stays with the server that served the client: failover does not carry it):"
show_db s

say "kill -9 the primary (pid ${SRV[p]})"
KILLED=$(now)
kill -KILL "${SRV[p]}"; wait "${SRV[p]}" 2>/dev/null || true; unset 'SRV[p]'
wait_states - communications-interrupted 10
NOTICED=$(now)
note "the secondary noticed at once (the kernel closed the connection; a silent cut is noticed after max-response-delay):"
show_both

say "The primary's dhclient clients come back (INIT-REBOOT) and a new client arrives"
printf '   %-6s %-14s %-14s %s\n' CLIENT BEFORE AFTER "SERVED BY"
KEPT=0 MOVED=0
for c in "${CLIENTS[@]}"; do
  [[ $c == dh* && ${BY[$c]} == primary ]] || continue
  since=$(nevents "$c")
  kill -TERM "${PID[$c]}"; wait "${PID[$c]}" 2>/dev/null || true
  start_client "$c"
  wait_bound "$c" "$since"
  printf '   %-6s %-14s %-14s %s\n' "$c" "${ADDR[$c]}" "$IP" "$(server_name "$SID")"
  [ "$IP" = "${ADDR[$c]}" ] || die "$c changed address"
  KEPT=$((KEPT + 1))
done
start_client late
wait_bound late 0
SERVED_LATE=$(now)
note "new client 'late' got $IP from the $(server_name "$SID") for ${LEASE}s: one of the secondary's own addresses, held to MCLT"

say "The operator declares the primary down: failoverctl partner-down"
ctl s partner-down >/dev/null
show_both
note "PARTNER-DOWN: after MCLT ($MCLT s) the secondary may also give the primary's free addresses (the countdown above)"
show_metrics s

say "The primary comes back with its database"
RESTARTED=$(now)
start_server p
note "it hears that its peer is in PARTNER-DOWN: RECOVER, it asks for every binding (UPDREQALL), waits MCLT, then NORMAL"
for _ in $(seq 50); do [ -S "$WORK/p.sock" ] && [ "$(state_of p)" != "" ] && break; sleep 0.1; done
sleep 1
note "one second later:"
show_both
wait_states normal normal 60
RECOVERED=$(now)
note "both in NORMAL again:"
show_both
for _ in $(seq 50); do [ "$(active_of p)" = "$(active_of s)" ] && break; sleep 0.1; done
[ "$(active_of p)" = "$(active_of s)" ] || die "the two databases differ after the recovery"
note "both databases hold the same $(active_of p | wc -l) active leases (addresses and clients), the one granted while the primary was down included:"
show_db p

say "Planned maintenance of the secondary: failoverctl maintenance start"
ctl s maintenance start | sed 's/^/   /' | sed -n 1,3p
note "the secondary is in SHUTDOWN and serves nobody; the primary took over at once (PARTNER-DOWN), no operator needed:"
show_status p
show_metrics p
note "(here the secondary would be stopped, upgraded, started again)"
ctl s maintenance stop | sed -n 1p | sed 's/^/   /'
wait_states normal normal 60
note "maintenance stop: the secondary fetched every binding (RECOVER) and both are NORMAL again"

say "Stopping both servers with SIGTERM"
for n in p s; do
  kill -TERM "${SRV[$n]}"; rc=0; wait "${SRV[$n]}" || rc=$?; unset "SRV[$n]"
  note "$([ $n = p ] && echo primary || echo secondary) exited with status $rc"
done
NP=0 NS=0
for c in "${CLIENTS[@]}"; do if [ "${BY[$c]}" = primary ]; then NP=$((NP + 1)); else NS=$((NS + 1)); fi; done
say "What was shown"
note "eight clients (four dhclient, four udhcpc) in NORMAL: $NP served by the primary, $NS by the secondary, eight distinct addresses"
note "primary killed with SIGKILL: the secondary noticed in $(secs "$KILLED" "$NOTICED") s and served a new client $(secs "$KILLED" "$SERVED_LATE") s after the kill"
note "leases kept across the kill: each of the primary's $KEPT dhclient clients, restarted, got its own address back from the secondary"
note "recovery: the restarted primary and the secondary were both NORMAL $(secs "$RESTARTED" "$RECOVERED") s after the restart (MCLT ${MCLT} s), both databases the same $(active_of p | wc -l) active leases"
note "planned maintenance of the secondary: the primary took over at once and the pair returned to NORMAL"
note "the lab (namespaces $P-*, the work directory) is removed on exit"
