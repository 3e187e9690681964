package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/granaryhq/granary/statestore"
)

// crashChildEnv, when set to a file path, turns TestAcknowledgedWritesSurviveKill
// into the child process that writes to that file until it is killed.
const crashChildEnv = "GRANARY_BOLTSTORE_CRASH_CHILD"

const crashWriters = 8

// TestAcknowledgedWritesSurviveKill runs a child process (this test binary)
// that writes concurrently and prints every acknowledged write, kills it with
// SIGKILL, and checks that the file holds every acknowledged write.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		runCrashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcknowledgedWritesSurviveKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	watchdog := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()

	// acked[key] is the value of the last acknowledged write of key; a key is
	// written with increasing values, so a later one may also have landed.
	acked := map[string]int{}
	puts := 0
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		fields := strings.Fields(lines.Text())
		if len(fields) != 3 || fields[0] != "ack" {
			continue
		}
		n, err := strconv.Atoi(fields[2])
		if err != nil {
			t.Fatalf("child printed %q", lines.Text())
		}
		acked[fields[1]] = n
		puts++
		if puts == 400 && !killed {
			// SIGKILL: no deferred function, no Close, nothing flushed.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d acknowledged writes: %v\n%s", puts, err, stderr.String())
	}
	t.Logf("killed the child after %d acknowledged writes (%d read before it died)", 400, puts)

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	for key, n := range acked {
		item, err := s.Get(context.Background(), key)
		if err != nil {
			t.Errorf("acknowledged key %q lost: %v", key, err)
			continue
		}
		got, err := strconv.Atoi(string(item.Value))
		if err != nil || got < n {
			t.Errorf("%q = %q after the kill, want at least the acknowledged %d", key, item.Value, n)
		}
	}
}

// runCrashChild writes forever from crashWriters goroutines: each puts a new
// key per write and overwrites a key of its own, and prints both as
// acknowledged once Transact has returned.
func runCrashChild(path string) {
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	for w := range crashWriters {
		go func() {
			last := fmt.Sprintf("last-%d", w)
			for i := 1; ; i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				v := strconv.Itoa(i)
				err := s.Transact(context.Background(), statestore.Txn{Ops: []statestore.Op{
					{Kind: statestore.Put, Key: key, Value: []byte(v)},
					{Kind: statestore.Put, Key: last, Value: []byte(v)},
				}})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				out.Lock()
				// One small write per acknowledgement: its lines reach the pipe whole or not at all.
				_, _ = os.Stdout.WriteString("ack " + key + " " + v + "\nack " + last + " " + v + "\n")
				out.Unlock()
			}
		}()
	}
	select {}
}
