//go:build !race

package testutil

// RaceEnabled reports whether this binary was built with -race; Build then
// builds the commands under test with -race too.
const RaceEnabled = false
