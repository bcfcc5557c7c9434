#!/bin/bash
# bench.sh -- perfdhcp DORA throughput: stock CoreDHCP (range plugin) against
# coredhcp-failover (failover plugin, single server), on this machine, in one
# run (`make bench`, as root). Method and topology follow ../shared/perf.
#
# Topology: namespace cfb-srv (cfbs 198.51.100.1/24) -- veth -- cfb-cli (cfbc
# 198.51.100.2/24). perfdhcp -4 always acts as a relay (giaddr 198.51.100.2),
# so every reply goes to 198.51.100.2:67. The pool 198.18.0.10-198.18.255.250
# (RFC 2544 benchmarking range) lives only inside DHCP packets: it is never
# configured on an interface and never a destination.
#
# Per run: a fresh server on an empty lease DB, pinned to CPU0; perfdhcp on
# CPU1 with CLIENTS simulated clients for PERIOD seconds at one offered rate
# (0 = flood). The two servers alternate (A B A B) up their rate ladders; a
# server's ladder stops after two failing rates in a row. Sustained = the
# highest offered rate with < 1 % loss (1 - ACKs/DISCOVERs) and an achieved
# rate of at least 98 % of the offer (median over REPS runs).
#
# Output: a table on stdout and in bench/results/latest.md; raw perfdhcp output
# and a CSV of every run in $WORKDIR (printed at the end).
#
# Env knobs (the defaults take 6-8 minutes, plus about a minute for the first build):
#   PERIOD=20  CLIENTS=50000  REPS=1  SEED=1
#   STOCK_RATES="50 100 150 200 250 300 400 500 600 800"   (empty: skip this server)
#   OURS_RATES="500 1000 2000 3000 4000 5000 6000 7000 8000 0" (0 = flood, always run)
#   PIN=1 (server on CPU0, perfdhcp on CPU1)   LOGLEVEL=warning (both servers)
#   COREDHCP_FAILOVER_BIN (default bin/coredhcp-failover)
#   STOCK_BIN (skip the build of stock CoreDHCP)   BENCH_CACHE (where it is built)
#   WORKDIR (default: a new directory in /tmp)   RSS_LIMIT_KIB=4000000
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=cfb
PERIOD=${PERIOD:-20}
CLIENTS=${CLIENTS:-50000}
REPS=${REPS:-1}
SEED=${SEED:-1}
PIN=${PIN:-1}
LOGLEVEL=${LOGLEVEL:-warning}
STOCK_RATES=${STOCK_RATES-50 100 150 200 250 300 400 500 600 800}
OURS_RATES=${OURS_RATES-500 1000 2000 3000 4000 5000 6000 7000 8000 0}
OURS_BIN=${COREDHCP_FAILOVER_BIN:-$REPO/bin/coredhcp-failover}
STOCK_VERSION=v0.0.0-20260217182248-a0841cb3038f
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coredhcp-failover-bench}
STOCK_BIN=${STOCK_BIN:-$BENCH_CACHE/stock-$STOCK_VERSION/coredhcp}
RSS_LIMIT_KIB=${RSS_LIMIT_KIB:-4000000}
POOL_START=198.18.0.10
POOL_END=198.18.255.250
SRV_IP=198.51.100.1
CLI_IP=198.51.100.2
HZ=$(getconf CLK_TCK)
RESULTS=${RESULTS:-$REPO/bench/results}
SRV_PID=""
GUARD_PID=""
ROW=""

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "bench: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (network namespaces): sudo make bench"
[ -x "$OURS_BIN" ] || die "$OURS_BIN not found: run make build first"
WORKDIR=${WORKDIR:-$(mktemp -d /tmp/cfb.XXXXXX)}
mkdir -p "$WORKDIR/runs" "$RESULTS"
CSV=$WORKDIR/runs.csv

pin() { # pin CPU: prints the taskset prefix
  if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then echo "taskset -c $1"; fi
}

# ------------------------------------------------------------------ tools
need=()
command -v perfdhcp >/dev/null || need+=(kea-admin)
command -v ip >/dev/null || need+=(iproute2)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ stock CoreDHCP
build_stock() {
  [ -x "$STOCK_BIN" ] && return
  local dir
  dir=$(dirname "$STOCK_BIN")
  log "building stock CoreDHCP $STOCK_VERSION in $dir"
  mkdir -p "$dir"
  (
    cd "$dir"
    export PATH=/usr/local/go/bin:$PATH GOFLAGS=-mod=mod
    [ -f go.mod ] || go mod init cfbench/stock >/dev/null 2>&1
    go get "github.com/coredhcp/coredhcp@$STOCK_VERSION"
    printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/coredhcp/coredhcp/cmds/coredhcp"\n' > tools.go
    go mod tidy
    CGO_ENABLED=1 go build -o "$STOCK_BIN" github.com/coredhcp/coredhcp/cmds/coredhcp
  )
}

# ------------------------------------------------------------------ topology and cleanup
topo_down() {
  local ns pid
  for ns in $(ip netns list | awk -v p="$P-" 'index($1, p) == 1 {print $1}'); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns delete "$ns"
  done
}
topo_up() {
  topo_down
  local ns
  for ns in $P-srv $P-cli; do
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set dev lo up
  done
  ip link add cfbs netns $P-srv type veth peer name cfbc netns $P-cli
  ip -n $P-srv addr add $SRV_IP/24 dev cfbs
  ip -n $P-cli addr add $CLI_IP/24 dev cfbc
  ip -n $P-srv link set dev cfbs up
  ip -n $P-cli link set dev cfbc up
}
stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill -TERM "$SRV_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}
cleanup() {
  local rc=$?
  set +e
  [ -z "$GUARD_PID" ] || kill "$GUARD_PID" 2>/dev/null
  stop_server
  topo_down
  [ $rc = 0 ] || log "bench FAILED (exit $rc); raw data in $WORKDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ servers
start_server() { # SERVER(stock|ours) -- fresh DB, waits until UDP 67 is bound
  local srv=$1 st=$WORKDIR/state
  rm -rf "$st"; mkdir -p "$st"
  if [ "$srv" = stock ]; then
    cat > "$st/config.yaml" <<EOF
server4:
  listen: ["0.0.0.0%cfbs"]
  plugins:
    - server_id: $SRV_IP
    - router: 198.18.0.1
    - netmask: 255.255.0.0
    - lease_time: 3600s
    - range: $st/leases.sqlite3 $POOL_START $POOL_END 3600s
EOF
    bin=$STOCK_BIN
  else
    cat > "$st/config.yaml" <<EOF
server4:
  listen: ["0.0.0.0%cfbs"]
  plugins:
    - server_id: $SRV_IP
    - failover: db=$st/leases.db subnet=198.18.0.0/16 pool=$POOL_START-$POOL_END relay=$CLI_IP lease-time=1h
    - router: 198.18.0.1
    - netmask: 255.255.0.0
EOF
    bin=$OURS_BIN
  fi
  # shellcheck disable=SC2046 # $(pin 0) is empty or "taskset -c 0"
  ip netns exec $P-srv $(pin 0) "$bin" -c "$st/config.yaml" -L "$LOGLEVEL" > "$st/server.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 100); do
    ip netns exec $P-srv ss -Huapn 2>/dev/null | grep -q "pid=$SRV_PID," && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  tail -20 "$st/server.log" >&2
  die "$srv server did not bind UDP port 67"
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }   # utime+stime
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }  # peak RSS, KiB
# shellcheck disable=SC2016 # $6 is awk's
rcvbuf_errors() { ip netns exec "$1" awk '/^Udp:/ {n++; if (n == 2) print $6}' /proc/net/snmp; }

# percentiles FILE SECTION: "p50 p99" in ms of one section of perfdhcp -x t output
percentiles() {
  awk -v want="$2" '
    /^\*\*\*Timestamps for packets: / {sec = $4; sub(/\*\*\*$/, "", sec); next}
    /^\*\*\*/ {sec = ""}
    sec == want && /^sent \/ received:/ {printf "%.3f\n", ($6 - $4) * 1000}
  ' "$1" | sort -n | awk '{v[NR] = $1} END {
      if (NR == 0) {print "nan nan"; exit}
      i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
      i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
      print v[i50], v[i99]}'
}

CSV_HEADER="server,rate,rep,achieved,do_sent,ra_rcvd,loss_pct,do_p50,do_p99,ra_p50,ra_p99,srv_cpu_pct,hwm_mib,gen_cpu_pct,srv_rcvbuf_drops,cli_rcvbuf_drops,guard"

# run_one SERVER RATE REP: one measured run; appends a CSV row and sets ROW
run_one() {
  local srv=$1 rate=$2 rep=$3
  local id=${srv}_r${rate}_${rep}
  local out=$WORKDIR/runs/$id.perfdhcp
  start_server "$srv"
  sleep 1
  local rflag=() t0 t1 w0 w1 rb0 rb1 rc0 rc1 hw guard=""
  [ "$rate" = 0 ] || rflag=(-r "$rate")
  t0=$(ticks "$SRV_PID"); rb0=$(rcvbuf_errors $P-srv); rc0=$(rcvbuf_errors $P-cli); w0=$(date +%s.%N)
  # guard: a server that queues without bound (stock CoreDHCP) must not eat the machine
  ( while sleep 1; do
      r=$(awk '/VmRSS/ {print $2}' "/proc/$SRV_PID/status" 2>/dev/null || echo 0)
      if [ "${r:-0}" -gt "$RSS_LIMIT_KIB" ]; then echo "RSS ${r} KiB" > "$out.guard"; kill -KILL "$SRV_PID"; fi
    done ) &
  GUARD_PID=$!
  local TIMEFORMAT='%U %S %R'
  # shellcheck disable=SC2046 # $(pin 1) is empty or "taskset -c 1"
  { time ip netns exec $P-cli $(pin 1) perfdhcp -4 -l cfbc "${rflag[@]}" -R "$CLIENTS" -p "$PERIOD" \
      -s "$SEED" -x t $SRV_IP > "$out" 2>&1 || true; } 2> "$out.time"
  w1=$(date +%s.%N); t1=$(ticks "$SRV_PID"); hw=$(hwm "$SRV_PID")
  rb1=$(rcvbuf_errors $P-srv); rc1=$(rcvbuf_errors $P-cli)
  kill "$GUARD_PID" 2>/dev/null || true; wait "$GUARD_PID" 2>/dev/null || true; GUARD_PID=""
  [ ! -f "$out.guard" ] || guard="killed:$(cat "$out.guard")"
  stop_server

  local achieved do_sent ra_rcvd loss dop rap cpu gencpu
  achieved=$(awk '/^Rate: / {print $2; exit}' "$out")
  do_sent=$(awk '/Statistics for: DISCOVER-OFFER/ {s = 1} s && /^sent packets:/ {print $3; exit}' "$out")
  ra_rcvd=$(awk '/Statistics for: REQUEST-ACK/ {s = 1} s && /^received packets:/ {print $3; exit}' "$out")
  if [ -z "$achieved" ] || [ -z "$do_sent" ] || [ -z "$ra_rcvd" ]; then
    tail -20 "$out" >&2
    die "cannot parse $out"
  fi
  loss=$(awk -v s="$do_sent" -v r="$ra_rcvd" 'BEGIN {printf "%.2f", (s > 0 ? 100 * (1 - r / s) : 100)}')
  dop=$(percentiles "$out" DISCOVER-OFFER); rap=$(percentiles "$out" REQUEST-ACK)
  cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.1f", 100 * d / hz / (b - a)}')
  gencpu=$(awk '{printf "%.1f", 100 * ($1 + $2) / $3}' "$out.time")
  sed -i '/^sent \/ received:/d' "$out"   # the per-packet dump is large; keep the summary
  ROW="$srv,$rate,$rep,$achieved,$do_sent,$ra_rcvd,$loss,${dop% *},${dop#* },${rap% *},${rap#* },$cpu,$((hw / 1024)),$gencpu,$((rb1 - rb0)),$((rc1 - rc0)),$guard"
  echo "$ROW" >> "$CSV"
}

# passes RATE LOSS ACHIEVED: sustained-criterion of one offered rate
passes() { awk -v r="$1" -v l="$2" -v a="$3" 'BEGIN {exit !(r > 0 && l < 1.0 && a >= 0.98 * r)}'; }

# median_row SERVER RATE: the CSV row of the median-loss run at that rate
median_row() {
  awk -F, -v s="$1" -v r="$2" '$1 == s && $2 == r' "$CSV" | sort -t, -k7,7g |
    awk '{row[NR] = $0} END {if (NR) print row[int((NR + 1) / 2)]}'
}

# ------------------------------------------------------------------ main
build_stock
[ -x "$STOCK_BIN" ] || die "stock CoreDHCP binary $STOCK_BIN missing after build"
log "stock: $STOCK_BIN ($STOCK_VERSION)"
log "ours:  $OURS_BIN ($("$OURS_BIN" --version 2>&1 | head -1))"
log "work:  $WORKDIR; $CLIENTS clients, ${PERIOD}s per run, $REPS run(s) per rate"
echo "$CSV_HEADER" > "$CSV"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
awk '{exit !($1 > 0.5)}' /proc/loadavg && log "warning: load average $LOAD_START before the start: other work on this machine will add noise"
topo_up

read -r -a stock_rates <<< "$STOCK_RATES"
read -r -a ours_rates <<< "$OURS_RATES"
declare -A fails=([stock]=0 [ours]=0)   # consecutive failing rates per server
steps=${#stock_rates[@]}; [ ${#ours_rates[@]} -le "$steps" ] || steps=${#ours_rates[@]}
for ((i = 0; i < steps; i++)); do
  for srv in stock ours; do
    if [ $srv = stock ]; then rate=${stock_rates[i]:-}; else rate=${ours_rates[i]:-}; fi
    [ -n "$rate" ] || continue
    # a ladder stops after two failing rates in a row; its flood step still runs
    [ "${fails[$srv]}" -lt 2 ] || [ "$rate" = 0 ] || continue
    for ((rep = 1; rep <= REPS; rep++)); do
      log "$srv rate=${rate/#0/flood} run $rep/$REPS"
      run_one $srv "$rate" $rep
      IFS=, read -r -a f <<< "$ROW"
      log "  achieved ${f[3]}/s, loss ${f[6]} %, RA p99 ${f[10]} ms, server CPU ${f[11]} %, RSS ${f[12]} MiB ${f[16]:-}"
    done
    [ "$rate" != 0 ] || continue
    IFS=, read -r -a m <<< "$(median_row $srv "$rate")"
    if passes "$rate" "${m[6]}" "${m[3]}"; then
      fails[$srv]=0
    else
      fails[$srv]=$((fails[$srv] + 1))
      [ "${fails[$srv]}" -lt 2 ] || log "  $srv failed two rates in a row: its ladder stops here"
    fi
  done
done
topo_down
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ------------------------------------------------------------------ report
# summary SERVER: "sustained|loss|do|ra|cpu|rss|flood" for the table, where
# sustained is "BEST [CLEAN]": the highest passing rate, and the highest rate
# below which every rate passed too
summary() {
  local srv=$1 best="" clean="" broken=0 r row top=""
  while read -r r; do
    top=$r
    IFS=, read -r -a row <<< "$(median_row "$srv" "$r")"
    if passes "$r" "${row[6]}" "${row[3]}"; then
      best=$r
      [ $broken = 1 ] || clean=$r
    else
      broken=1
    fi
  done < <(awk -F, -v s="$srv" 'NR > 1 && $1 == s && $2 > 0 {print $2}' "$CSV" | sort -un)
  local flood="–"
  IFS=, read -r -a row <<< "$(median_row "$srv" 0)"
  [ ${#row[@]} -eq 0 ] || flood="${row[3]} (${row[6]} % loss)"
  if [ -z "$best" ]; then
    echo "none|–|–|–|–|–|$flood"
    return
  fi
  local label="$best [${clean:-none}]"
  [ "$best" != "$top" ] || label="≥ $best [${clean:-none}] (top of the ladder)"
  IFS=, read -r -a row <<< "$(median_row "$srv" "$best")"
  echo "$label|${row[6]} %|${row[7]} / ${row[8]}|${row[9]} / ${row[10]}|${row[11]} %|${row[12]} MiB|$flood"
}
IFS='|' read -r s_best s_loss s_do s_ra s_cpu s_rss s_flood <<< "$(summary stock)"
IFS='|' read -r o_best o_loss o_do o_ra o_cpu o_rss o_flood <<< "$(summary ours)"
max_rss() { awk -F, -v s="$1" '$1 == s && $13 > m {m = $13} END {print m + 0}' "$CSV"; }
ratio="n/a" ratio_clean="n/a"
s_clean=$(grep -oE '\[[0-9]+\]' <<< "$s_best" | tr -d '[]' || true)
o_clean=$(grep -oE '\[[0-9]+\]' <<< "$o_best" | tr -d '[]' || true)
if [ -n "$s_clean" ] && [ -n "$o_clean" ]; then
  ratio_clean=$(awk -v a="$o_clean" -v b="$s_clean" 'BEGIN {printf "%.1f", a / b}')
fi
s_num=$(grep -oE '[0-9]+' <<< "$s_best" | head -1 || true)
o_num=$(grep -oE '[0-9]+' <<< "$o_best" | head -1 || true)
if [ -n "$s_num" ] && [ -n "$o_num" ]; then
  ratio=$(awk -v a="$o_num" -v b="$s_num" 'BEGIN {printf "%.1f", a / b}')
  case "$o_best/$s_best" in
    "≥"*/"≥"*) ratio="undetermined: both servers passed their whole ladders (raise OURS_RATES and STOCK_RATES)" ;;
    "≥"*) ratio="≥ $ratio (ours passed its whole ladder)" ;;
    */"≥"*) ratio="≤ $ratio (stock passed its whole ladder: raise STOCK_RATES)" ;;
  esac
fi

md=$RESULTS/latest.md
{
  echo "# coredhcp-failover vs stock CoreDHCP: perfdhcp DORA"
  echo
  echo "Measured $(date -u '+%F %H:%M UTC') by \`bench/bench.sh\` on $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM; lease DBs in $WORKDIR ($(df -T "$WORKDIR" | awk 'NR == 2 {print $2}')); load average $LOAD_START before, $LOAD_END after (the bench itself adds about 1-2)."
  echo
  echo "- stock: CoreDHCP \`$STOCK_VERSION\` \`cmds/coredhcp\`, plugins server_id, router, netmask, lease_time, range (sqlite)"
  echo "- ours: \`$("$OURS_BIN" --version 2>&1 | head -1)\`, plugins server_id, failover (sqlite WAL, relay=$CLI_IP subnet=198.18.0.0/16), router, netmask"
  echo "- both at \`-L $LOGLEVEL\`; perfdhcp $(perfdhcp -v 2>&1 | awk '{print $2; exit}') as relay from a veth peer namespace, \`-R $CLIENTS -p $PERIOD -s $SEED -x t\`; pool $POOL_START-$POOL_END, lease time 3600 s"
  echo "- server pinned to CPU0, perfdhcp to CPU1 (PIN=$PIN); a fresh empty DB for every run; servers alternate up their ladders; $REPS run(s) per rate (median)"
  echo "- sustained = highest offered rate with loss < 1 % (1 - ACKs/DISCOVERs) and achieved ≥ 98 % of the offer; in [ ] the highest rate at which that rate and every lower one passed; latencies and CPU are those of the sustained run"
  echo
  echo "| server | sustained DORA/s | loss | DO p50 / p99 ms | RA p50 / p99 ms | server CPU | peak RSS (max any run) | flood DORA/s |"
  echo "|---|---|---|---|---|---|---|---|"
  echo "| stock CoreDHCP (range) | $s_best | $s_loss | $s_do | $s_ra | $s_cpu | $s_rss ($(max_rss stock) MiB) | $s_flood |"
  echo "| coredhcp-failover (failover, single) | $o_best | $o_loss | $o_do | $o_ra | $o_cpu | $o_rss ($(max_rss ours) MiB) | $o_flood |"
  echo
  echo "**Ratio ours / stock (sustained): $ratio** (from the [ ] figures: $ratio_clean)"
  echo
  echo "Ladders: stock \`$STOCK_RATES\`, ours \`$OURS_RATES\` (0 = flood); a ladder stops after two failing rates in a row. At 5000/s and above perfdhcp itself needs most of its core (see gen CPU), so the rig, not the server, may be the limit there (../shared/perf/WRITEUP.md: about 7k DORA/s on 2 cores)."
  echo
  echo "## Every run"
  echo
  echo "| server | offered/s | run | achieved/s | DISCOVER sent | ACK rcvd | loss % | DO p50/p99 ms | RA p50/p99 ms | server CPU % | RSS MiB | perfdhcp CPU % | UDP rcvbuf drops server/perfdhcp | note |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F, 'NR > 1 {printf "| %s | %s | %s | %s | %s | %s | %s | %s/%s | %s/%s | %s | %s | %s | %s/%s | %s |\n",
    $1, ($2 == 0 ? "flood" : $2), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17}' "$CSV"
} > "$md"

echo
cat "$md"
echo
log "written $md; raw perfdhcp output and runs.csv in $WORKDIR"
