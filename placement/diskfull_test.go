package placement

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fullDisk is a Raft log store whose writes fail with ENOSPC while full is
// set, as on a disk with no space left.
type fullDisk struct {
	raft.LogStore
	full atomic.Bool
}

func (d *fullDisk) StoreLog(l *raft.Log) error {
	if d.full.Load() {
		return fmt.Errorf("writing log %d: %w", l.Index, syscall.ENOSPC)
	}
	return d.LogStore.StoreLog(l)
}

func (d *fullDisk) StoreLogs(ls []*raft.Log) error {
	if d.full.Load() {
		return fmt.Errorf("writing %d logs: %w", len(ls), syscall.ENOSPC)
	}
	return d.LogStore.StoreLogs(ls)
}

// A full disk under the Raft store refuses changes without stopping the
// node or acknowledging anything it did not store; once there is space
// again, changes commit, and a reopened node holds exactly what was
// acknowledged.
func TestFullDiskRefusesChangesAndRecovers(t *testing.T) {
	c := newCluster(t, testLogger(t), "a")
	disk := &fullDisk{}
	withDisk := func(cfg *Config) {
		cfg.wrapLogStore = func(s raft.LogStore) raft.LogStore { disk.LogStore = s; return disk }
	}
	n := c.open("a", withDisk)
	waitLeader(t, n)
	if tb := applyOn(t, n, joinOf("s1", "i1", "counter")); tb.Version != 1 {
		t.Fatalf("table version %d after the first join, want 1", tb.Version)
	}

	disk.full.Store(true)
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tb, err := n.Apply(ctx, joinOf("s2", "i2", "counter"))
		cancel()
		if err == nil {
			t.Fatalf("a change on a full disk was acknowledged: table v%d", tb.Version)
		}
		// The first attempt meets the disk's error; the leader then steps
		// down, and stands again, so the next may find no leader.
		if i == 0 && !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, ErrNotLeader) {
			t.Fatalf("change %d on a full disk failed with %v, want the disk's error (then perhaps no leader)", i+1, err)
		}
		if i == 0 && !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("the error does not say the disk is full: %v", err)
		}
	}
	if err := n.Err(); err != nil {
		t.Fatalf("the node stopped on a full disk: %v", err)
	}
	if _, ok := n.Table().Member("s2"); ok || n.Table().Version != 1 {
		t.Fatalf("the table holds a change that was never stored: v%d %+v", n.Table().Version, n.Table().Members)
	}

	disk.full.Store(false)
	waitLeader(t, n)
	tb := applyOn(t, n, joinOf("s2", "i2", "counter"))
	if _, ok := tb.Member("s2"); !ok {
		t.Fatalf("the join after space came back is not in the table: %+v", tb.Members)
	}
	version := tb.Version
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	again := c.open("a", nil)
	waitLeader(t, again)
	waitTable(t, []*Node{again}, version, "s1", "s2")
}
