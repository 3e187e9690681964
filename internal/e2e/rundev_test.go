package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/granaryhq/granary/internal/testutil"
)

// TestRunDevScript runs scripts/run-dev.sh, what `make run` runs, on free
// ports: the Counter answers through the gateway, and a Ctrl-C stops
// granary and the app cleanly. The script expects bin/granary and
// bin/counter-go beside it, so it runs from a copy of the layout it needs,
// with the binaries built for this test run.
func TestRunDevScript(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skipf("SKIPPED: this test sends Ctrl-C to a process group, which the test helpers set up on Linux only, not on %s", runtime.GOOS)
	}
	bash := interpreter(t, "bash")

	root := t.TempDir()
	for _, dir := range []string{"bin", "scripts"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile(filepath.Join(moduleRoot, "scripts", "run-dev.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "scripts", "run-dev.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, bin := range map[string]string{"granary": granaryBin, "counter-go": counterGoBin} {
		if err := os.Symlink(bin, filepath.Join(root, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}

	c := newCluster(t, goCounter)
	// The script is started from elsewhere: it must find its layout itself.
	cmd := exec.Command(bash, filepath.Join(root, "scripts", "run-dev.sh"))
	cmd.Dir = t.TempDir()
	cmd.Env = testutil.Env(
		"APP_PORT="+strconv.Itoa(c.appPort),
		"HTTP_PORT="+strconv.Itoa(c.httpPort),
		"STORE=",
		"GRANARY_URL=", "DAPR_API_TOKEN=", "APP_API_TOKEN=",
	)
	p := testutil.Start(t, "run-dev.sh", cmd)
	c.waitReady(p)

	c.expectCount("a", "increment", "", 1)
	c.expectCount("a", "increment", `{"by": 2}`, 3)
	md := c.metadata()
	if len(md.Apps) != 1 || md.Apps[0].ID != "counter" || !md.Apps[0].Healthy ||
		md.Apps[0].URL != fmt.Sprintf("http://127.0.0.1:%d", c.appPort) {
		t.Fatalf("apps in metadata: %+v, want the healthy app counter at port %d", md.Apps, c.appPort)
	}
	if _, err := os.Stat(filepath.Join(root, ".granary", "state.db")); err != nil {
		t.Fatalf("the embedded store is not in the script's directory: %v", err)
	}

	// Ctrl-C reaches the whole foreground process group.
	if err := p.SignalGroup(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if !p.WaitExit(2 * stopTimeout) {
		t.Fatalf("run-dev.sh still runs %v after Ctrl-C", 2*stopTimeout)
	}
	if err := p.Err(); err != nil {
		t.Fatalf("run-dev.sh after Ctrl-C: %v, want exit status 0", err)
	}
	for _, port := range []int{c.appPort, c.httpPort} {
		testutil.Eventually(t, stopTimeout, fmt.Sprintf("port %d to close", port), func() error {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
			if err != nil {
				return nil
			}
			conn.Close()
			return fmt.Errorf("something still listens on port %d", port)
		})
	}
	if _, err := c.try(http.MethodGet, "/v1.0/healthz", ""); err == nil {
		t.Fatal("the gateway still answers after the script exited")
	}
}
