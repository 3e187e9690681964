package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// placementNode is one `granary placement` process and its data directory,
// kept across restarts.
type placementNode struct {
	id, raftAddr, grpcAddr, httpAddr, dataDir string
	proc                                      *testutil.Proc
	starts                                    int
	// extra are more flags for every start.
	extra []string
}

type placementStatus struct {
	Node struct {
		ID           string
		State        string
		Leading      bool
		LeaderID     string
		Term         uint64
		ClusterID    string
		TableVersion uint64
	} `json:"node"`
}

func newPlacementNodes(t *testing.T, n int) []*placementNode {
	var nodes []*placementNode
	for i := range n {
		nodes = append(nodes, &placementNode{
			id:       fmt.Sprintf("p%d", i+1),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
			grpcAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
			dataDir:  t.TempDir(),
		})
	}
	return nodes
}

func peerList(nodes []*placementNode) string {
	var parts []string
	for _, nd := range nodes {
		parts = append(parts, nd.id+"="+nd.raftAddr)
	}
	return strings.Join(parts, ",")
}

func (nd *placementNode) command(peers string, extra ...string) *exec.Cmd {
	args := []string{"placement", "--id", nd.id, "--raft-addr", nd.raftAddr, "--grpc-addr", nd.grpcAddr,
		"--http-addr", nd.httpAddr, "--data-dir", nd.dataDir, "--peers", peers, "--metrics-port", "0"}
	cmd := exec.Command(granaryBin, append(args, extra...)...)
	cmd.Env = testutil.Env()
	return cmd
}

func (nd *placementNode) start(t *testing.T, peers string) {
	t.Helper()
	nd.starts++
	nd.proc = testutil.Start(t, fmt.Sprintf("%s#%d", nd.id, nd.starts), nd.command(peers, nd.extra...))
	nd.proc.WaitHTTP(t, "http://"+nd.httpAddr+"/status", readyTimeout, func(status int, _ []byte) error {
		if status != http.StatusOK {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
}

func (nd *placementNode) status() (placementStatus, error) {
	var st placementStatus
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + nd.httpAddr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// leaderOf returns the node all running nodes agree leads, with its status.
func leaderOf(nodes []*placementNode) (*placementNode, placementStatus, error) {
	var leader *placementNode
	var lst placementStatus
	for _, nd := range nodes {
		if nd.proc == nil || nd.proc.Exited() {
			continue
		}
		st, err := nd.status()
		if err != nil {
			return nil, lst, err
		}
		if st.Node.Leading {
			if leader != nil {
				return nil, lst, fmt.Errorf("two nodes report leading: %s and %s", leader.id, nd.id)
			}
			leader, lst = nd, st
		}
	}
	if leader == nil {
		return nil, lst, fmt.Errorf("no node leads")
	}
	return leader, lst, nil
}

func TestPlacementNodesKilledInTurnKeepOneClusterAndElectQuickly(t *testing.T) {
	nodes := newPlacementNodes(t, 3)
	peers := peerList(nodes)
	for _, nd := range nodes {
		nd.start(t, peers)
	}
	var clusterID string
	testutil.Eventually(t, 10*time.Second, "a leader with a cluster ID", func() error {
		_, st, err := leaderOf(nodes)
		if err == nil && st.Node.ClusterID == "" {
			err = fmt.Errorf("no cluster ID yet")
		}
		clusterID = st.Node.ClusterID
		return err
	})
	// Kill each node in turn with SIGKILL and restart it on its data; the
	// leader is among them. A leader answers again within 5 s every time.
	for round := range len(nodes) {
		victim := nodes[round]
		if l, _, err := leaderOf(nodes); err == nil && round == 0 {
			victim = l // the first victim is the leader
		}
		_ = victim.proc.SignalGroup(syscall.SIGKILL)
		victim.proc.WaitExit(stopTimeout)
		killed := time.Now()
		testutil.Eventually(t, 5*time.Second, "a leader after killing "+victim.id, func() error {
			_, _, err := leaderOf(nodes)
			return err
		})
		t.Logf("killed %s: a leader answered %v later", victim.id, time.Since(killed).Round(time.Millisecond))
		victim.start(t, peers)
		testutil.Eventually(t, 10*time.Second, victim.id+" rejoining", func() error {
			st, err := victim.status()
			if err != nil {
				return err
			}
			if st.Node.ClusterID != clusterID {
				return fmt.Errorf("%s reports cluster %q, want %q", victim.id, st.Node.ClusterID, clusterID)
			}
			if st.Node.LeaderID == "" {
				return fmt.Errorf("%s knows no leader", victim.id)
			}
			return nil
		})
	}
}

func TestPlacementNodeWithDisagreeingPeersExitsNonZero(t *testing.T) {
	nodes := newPlacementNodes(t, 1)
	nd := nodes[0]
	nd.start(t, peerList(nodes))
	_ = nd.proc.Stop(stopTimeout)
	other := fmt.Sprintf("%s,p9=127.0.0.1:%d", peerList(nodes), testutil.FreePort(t))
	p := testutil.Start(t, "p1-wrong-peers", nd.command(other))
	if !p.WaitExit(readyTimeout) {
		t.Fatal("a node started with a disagreeing peer list kept running")
	}
	if p.ExitCode() == 0 {
		t.Fatal("a node started with a disagreeing peer list exited 0")
	}
	if out := p.Output(); !strings.Contains(out, "p9") {
		t.Fatalf("the error does not name the peer lists:\n%s", out)
	}
}

func TestPlacementNodeWithAnotherClusterIDExitsNonZero(t *testing.T) {
	nodes := newPlacementNodes(t, 1)
	nd := nodes[0]
	nd.start(t, peerList(nodes))
	testutil.Eventually(t, 10*time.Second, "a cluster ID", func() error {
		st, err := nd.status()
		if err == nil && st.Node.ClusterID == "" {
			err = fmt.Errorf("none yet")
		}
		return err
	})
	_ = nd.proc.Stop(stopTimeout)
	p := testutil.Start(t, "p1-other-cluster", nd.command(peerList(nodes), "--cluster-id", "someone-else"))
	if !p.WaitExit(readyTimeout) {
		t.Fatal("a node started with another cluster ID kept running")
	}
	if p.ExitCode() == 0 {
		t.Fatal("a node started with another cluster ID exited 0")
	}
}
