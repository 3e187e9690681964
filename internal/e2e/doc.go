// Package e2e holds Granary's end-to-end tests. They build `granary` and the
// Go Counter example once, then run them, the Python and JavaScript Counter
// examples and scripts/run-dev.sh as real processes on loopback ports:
// counts that survive a clean restart and a kill -9, the gateway's answers
// to bad input, an app that crashes and comes back while Granary runs, and
// an app that starts after Granary.
//
// The Python and JavaScript examples need python3 and node on PATH; without
// them their tests are skipped with a message saying so.
package e2e
