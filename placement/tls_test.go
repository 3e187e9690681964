package placement

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/granaryhq/granary/internal/mtls"
)

// Three nodes whose Raft links are mutual TLS elect a leader and replicate.
func TestNodeThreeNodeClusterOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := mtls.InitCA(caDir, time.Now(), mtls.DefaultCAValidity); err != nil {
		t.Fatal(err)
	}
	logger := testLogger(t)
	c := newCluster(t, logger, "a", "b", "c")
	var nodes []*Node
	for _, id := range []string{"a", "b", "c"} {
		cert, key, err := mtls.Issue(caDir, id, filepath.Join(dir, "certs"), nil, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		src, err := mtls.Load(mtls.Files{CA: filepath.Join(caDir, mtls.CACertFile), Cert: cert, Key: key}, logger)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, c.open(id, func(cfg *Config) {
			cfg.RaftStream = func(ln net.Listener, adv net.Addr) raft.StreamLayer {
				return mtls.NewRaftStreamLayer(ln, adv, src, logger)
			}
		}))
	}
	leader := waitLeader(t, nodes...)
	applyOn(t, leader, joinOf("s1", "i1", "counter"))
	waitTable(t, nodes, 1, "s1")
}
