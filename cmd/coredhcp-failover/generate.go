package main

// main.go is generated from plugins.txt and main.go.template by CoreDHCP's
// generator, pinned in go.mod as a tool. The generator does not truncate its
// output file, so it writes a temporary file that gofmt turns into main.go.
//go:generate sh -c "go tool coredhcp-generator -t main.go.template -f plugins.txt -o main.go.tmp >/dev/null && gofmt main.go.tmp > main.go && rm -f main.go.tmp"
