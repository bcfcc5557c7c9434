#!/bin/sh
# gen.sh OUT: render main.go from plugins.txt and main.go.template with
# CoreDHCP's generator (pinned in go.mod as a tool), gofmt'ed, into OUT.
# Used by go generate (OUT=main.go) and by make check-generate.
set -eu
cd "$(dirname "$0")"
out=$1
tmp=$(mktemp "${TMPDIR:-/tmp}/coredhcp-gen.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# The generator does not truncate its output file: give it a fresh one.
rm -f "$tmp"
go tool coredhcp-generator -t main.go.template -f plugins.txt -o "$tmp" >/dev/null 2>&1 ||
	go tool coredhcp-generator -t main.go.template -f plugins.txt -o "$tmp"
gofmt "$tmp" >"$out.new"
mv "$out.new" "$out"
