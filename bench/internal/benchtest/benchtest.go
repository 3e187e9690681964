// Package benchtest holds what the benchmark commands' tests share.
package benchtest

import (
	"os"
	"path/filepath"
	"testing"
)

// FakeExecutable writes an executable that does nothing into a fresh
// temporary directory, for tests of flags that must name an executable.
func FakeExecutable(t testing.TB) (dir, exe string) {
	t.Helper()
	dir = t.TempDir()
	exe = filepath.Join(dir, "bin")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, exe
}
