#!/usr/bin/env bash
# deps.sh PACKAGE:CHECK ...: installs, quietly, the Debian packages whose
# CHECK fails. CHECK is a command looked up on PATH, or an absolute path
# that must exist. Says in one line what it installs; apt's output is
# shown only when it fails.
#
# A package's postinst would start its service (isc-dhcp-server or
# kea-dhcp4-server answering on the host's interfaces): a policy-rc.d that
# refuses every start is in place for the install when there is none, and
# on a systemd host those services are then stopped and disabled.
set -euo pipefail
need=()
for pc in "$@"; do
	pkg=${pc%%:*} check=${pc#*:}
	case $check in
	/*) [ -e "$check" ] ;;
	*) command -v "$check" >/dev/null ;;
	esac || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}"
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
log=$(mktemp)
if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
	cat "$log" >&2
	rm -f "$log"
	echo "deps.sh: installing ${need[*]} failed (apt's output above)" >&2
	exit 1
fi
rm -f "$log"
if [ -d /run/systemd/system ]; then
	for svc in isc-dhcp-server kea-dhcp4-server; do
		systemctl disable --now "$svc" >/dev/null 2>&1 || true
	done
fi
