package main

// main.go is generated from plugins.txt and main.go.template by CoreDHCP's
// generator, pinned in go.mod as a tool; `make check-generate` fails when
// the committed main.go is stale.
//go:generate ./gen.sh main.go
