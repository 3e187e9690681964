package placement

// The cluster ID: made at the first bootstrap (or given), kept in Raft and
// in DataDir/cluster-id, and never changed.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// adoptClusterID is called by the FSM whenever its state holds a cluster ID.
func (n *Node) adoptClusterID(id string) {
	n.mu.Lock()
	known, from, saved := n.clusterID, n.clusterIDFrom, n.clusterIDSaved
	if known == "" {
		n.clusterID, n.clusterIDFrom = id, "the Raft log"
	}
	n.mu.Unlock()
	if known != "" && known != id {
		n.fail(fmt.Errorf("placement node %s: %w: the Raft log holds cluster ID %q, but this node's is %q (from %s); "+
			"this node's data or flags belong to another cluster", n.cfg.ID, ErrClusterIDMismatch, id, known, from))
		return
	}
	if saved {
		return
	}
	if err := writeClusterID(n.cfg.DataDir, id); err != nil {
		n.fail(fmt.Errorf("placement node %s: %w", n.cfg.ID, err))
		return
	}
	n.mu.Lock()
	n.clusterIDSaved = true
	n.mu.Unlock()
}

// readClusterID returns the cluster ID stored in dir, "" when none is.
func readClusterID(dir string) (string, error) {
	path := filepath.Join(dir, clusterIDFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the cluster ID: %w", err)
	}
	id := strings.TrimSpace(string(data))
	if id == "" {
		return "", fmt.Errorf("%s is empty; write the cluster's ID into it, or remove it to adopt the ID in the Raft log", path)
	}
	return id, nil
}

// writeClusterID stores id in dir, replacing the file atomically.
func writeClusterID(dir, id string) error {
	path := filepath.Join(dir, clusterIDFile)
	tmp, err := os.CreateTemp(dir, clusterIDFile+".*")
	if err != nil {
		return fmt.Errorf("storing the cluster ID: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.WriteString(tmp, id+"\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("storing the cluster ID: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("storing the cluster ID: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("storing the cluster ID: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("storing the cluster ID: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func randomClusterID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making a cluster ID: %w", err)
	}
	return hex.EncodeToString(b), nil
}
