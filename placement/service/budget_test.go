package service_test

import (
	"testing"
	"time"

	"github.com/granaryhq/granary/placement"
	"github.com/granaryhq/granary/placement/membership"
)

// TestTimingBudget checks the defaults against the budget of docs/placement.md:
// a silo must get a fresh acknowledgement from a new leader before its lease
// runs out, and its lease must run out before the leader may remove it.
//
//	heartbeat interval + leader failover (worst case) + reconnect and first
//	acknowledgement < lease period < faulty-host timeout
//
// Raft's worst-case failover is two heartbeat timeouts (a follower waits up
// to twice the timeout before it stands) plus one election timeout (a split
// vote); the reconnect is a probe of each node, one heartbeat interval, plus
// one leadership check before the acknowledgement.
func TestTimingBudget(t *testing.T) {
	const heartbeat = 250 * time.Millisecond
	failover := 2*placement.DefaultHeartbeatTimeout + placement.DefaultElectionTimeout
	reconnect := heartbeat + membership.DefaultVerifyInterval
	budget := heartbeat + failover + reconnect
	lease := membership.DefaultLeasePeriod
	t.Logf("heartbeat %v + failover %v + reconnect %v = %v < lease %v < faulty-host timeout %v",
		heartbeat, failover, reconnect, budget, lease, membership.DefaultFaultyHostTimeout)
	if budget >= lease {
		t.Errorf("the failover budget %v does not fit in the lease period %v", budget, lease)
	}
	if lease >= membership.DefaultFaultyHostTimeout {
		t.Errorf("the lease period %v is not shorter than the faulty-host timeout %v", lease, membership.DefaultFaultyHostTimeout)
	}
	if bound := (membership.Config{}).LeaseBound(); bound >= membership.DefaultFaultyHostTimeout {
		t.Errorf("a removed silo's lease bound %v exceeds the faulty-host timeout %v: every removal would wait on it", bound, membership.DefaultFaultyHostTimeout)
	}
}
