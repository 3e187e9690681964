package cluster

// The links of the cluster, which the nemesis cuts, slows and heals.

import (
	"time"

	"github.com/granaryhq/granary/chaos/proxy"
)

// Link is a set of proxies a fault acts on together.
type Link []*proxy.Proxy

// Cut partitions every proxy of the link in both directions; held bytes
// are delivered after Heal, as TCP retransmission would.
func (l Link) Cut() {
	for _, p := range l {
		p.Cut()
	}
}

// CutWith partitions the link in the given mode and directions.
func (l Link) CutWith(mode proxy.CutMode, dirs proxy.Direction) {
	for _, p := range l {
		p.CutWith(mode, dirs)
	}
}

// Slow adds latency (d ± jitter each way) to the link.
func (l Link) Slow(d, jitter time.Duration) {
	for _, p := range l {
		p.SetLatency(d, jitter)
	}
}

// Throttle limits the link's bandwidth in each direction.
func (l Link) Throttle(bytesPerSecond int) {
	for _, p := range l {
		p.SetBandwidth(bytesPerSecond)
	}
}

// Heal ends every fault on the link.
func (l Link) Heal() {
	for _, p := range l {
		p.Heal()
		p.SetLatency(0, 0)
		p.SetBandwidth(0)
	}
}

// SiloToPlacement is the link from silo s to the given placement nodes
// (all of them when none are given).
func (c *Cluster) SiloToPlacement(s *Silo, nodes ...int) Link {
	if len(nodes) == 0 {
		return append(Link{}, s.toPlacement...)
	}
	var l Link
	for _, i := range nodes {
		l = append(l, s.toPlacement[i])
	}
	return l
}

// SiloToSilos is every link between silo s and the other silos, both ways.
func (c *Cluster) SiloToSilos(s *Silo) Link {
	var l Link
	for _, t := range c.silos {
		if t != s {
			l = append(l, s.toSilo[t.Index], t.toSilo[s.Index])
		}
	}
	return l
}

// SiloToStore is silo s's link to the store.
func (c *Cluster) SiloToStore(s *Silo) Link { return Link{s.toStore} }

// RaftBetween is every Raft link between the nodes of group and the rest,
// both ways: cutting it partitions group from the others.
func (c *Cluster) RaftBetween(group []int) Link {
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	var l Link
	for _, n := range c.nodes {
		for from, p := range n.raftFrom {
			if in[from] != in[n.Index] {
				l = append(l, p)
			}
		}
	}
	return l
}

// HealAll ends every fault on every link.
func (c *Cluster) HealAll() {
	c.mu.Lock()
	l := Link(append([]*proxy.Proxy{}, c.proxies...))
	c.mu.Unlock()
	l.Heal()
}
