package launch_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/granaryhq/granary/internal/launch"
)

func TestFreePorts(t *testing.T) {
	ports, err := launch.FreePorts(30)
	if err != nil {
		t.Fatal(err)
	}
	if len(ports) != 30 {
		t.Fatalf("%d ports, want 30", len(ports))
	}
	seen := map[int]bool{}
	for _, port := range ports {
		if seen[port] {
			t.Fatalf("port %d picked twice", port)
		}
		seen[port] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("picked port %d cannot be bound: %v", port, err)
		}
		ln.Close()
		if port < 20000 || port >= 32768 {
			t.Errorf("port %d is outside [20000, 32768), where outgoing connections never take a port", port)
		}
	}
}

func TestConsecutivePorts(t *testing.T) {
	if got := launch.ConsecutivePorts(7000, 3); !slices.Equal(got, []int{7000, 7001, 7002}) {
		t.Errorf("ConsecutivePorts(7000, 3) = %v", got)
	}
	if got := launch.ConsecutivePorts(7000, 0); len(got) != 0 {
		t.Errorf("ConsecutivePorts(7000, 0) = %v", got)
	}
}

func TestShellArgv(t *testing.T) {
	cases := []struct{ cmd, script string }{
		{"go run ./examples/counter-go", "exec go run ./examples/counter-go"},
		{"./app --port 3000", "exec ./app --port 3000"},
		{"cd examples/counter-go && go run .", "cd examples/counter-go && go run ."},
		{"PORT=$APP_PORT ./app", "PORT=$APP_PORT ./app"},
		{"'/opt/my app/bin' serve", "'/opt/my app/bin' serve"},
		{"./a; ./b", "./a; ./b"},
		{"./app > out.log", "./app > out.log"},
		{"./app\n./b", "./app\n./b"},
		{"ls *.go", "ls *.go"},
		{"echo ~", "echo ~"},
	}
	for _, c := range cases {
		if got, want := launch.ShellArgv(c.cmd), []string{"/bin/sh", "-c", c.script}; !slices.Equal(got, want) {
			t.Errorf("ShellArgv(%q) = %q, want %q", c.cmd, got, want)
		}
	}
}

func TestEnvWith(t *testing.T) {
	cases := []struct {
		name      string
		base, set []string
		want      []string
	}{
		{"nothing set", []string{"A=1", "B=2"}, nil, []string{"A=1", "B=2"}},
		{"replaced and added", []string{"A=1", "APP_PORT=9", "B=x=y"}, []string{"APP_PORT=3000", "C="},
			[]string{"A=1", "B=x=y", "APP_PORT=3000", "C="}},
		{"every value of a name replaced", []string{"A=1", "A=2", "B=3"}, []string{"A=4"}, []string{"B=3", "A=4"}},
		{"a name set without =", []string{"A=1", "B=2"}, []string{"A"}, []string{"B=2", "A"}},
		{"empty base", nil, []string{"A=1"}, []string{"A=1"}},
		{"a name that is a prefix of another", []string{"APP=1", "APP_PORT=2"}, []string{"APP=3"}, []string{"APP_PORT=2", "APP=3"}},
	}
	for _, c := range cases {
		if got := launch.EnvWith(c.base, c.set); !slices.Equal(got, c.want) {
			t.Errorf("%s: EnvWith(%q, %q) = %q, want %q", c.name, c.base, c.set, got, c.want)
		}
	}
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	var b strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := launch.LogTail(path, 20)
	want := "  last lines of " + path + ":\n"
	for i := 11; i <= 30; i++ {
		want += fmt.Sprintf("    line %d\n", i)
	}
	if tail != want {
		t.Errorf("tail of 20 of 30 lines:\n%s\nwant:\n%s", tail, want)
	}
	if tail := launch.LogTail(path, 0); !strings.Contains(tail, "    line 1\n") || !strings.Contains(tail, "    line 30\n") {
		t.Errorf("tail with no limit lacks the first or last line:\n%s", tail)
	}
	if tail := launch.LogTail(path, 50); strings.Count(tail, "\n") != 31 {
		t.Errorf("tail of 50 of 30 lines is not all 30 and the heading:\n%s", tail)
	}

	empty := filepath.Join(dir, "empty.log")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if tail := launch.LogTail(empty, 20); tail != "  (log "+empty+" is empty)\n" {
		t.Errorf("tail of an empty log: %q", tail)
	}
	missing := filepath.Join(dir, "missing.log")
	if tail := launch.LogTail(missing, 20); !strings.HasPrefix(tail, "  (log "+missing+": ") || !strings.HasSuffix(tail, ")\n") {
		t.Errorf("tail of a missing log: %q", tail)
	}

	// Only the end of a big log is read; its first line read may be cut.
	big := filepath.Join(dir, "big.log")
	line := strings.Repeat("x", 99) + "\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(line, 2000)+"the end\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if tail := launch.LogTail(big, 3); !strings.HasSuffix(tail, "    "+line+"    "+line+"    the end\n") {
		t.Errorf("tail of a big log:\n%s", tail)
	}
}

func TestReadiness(t *testing.T) {
	cases := []struct {
		spec launch.Spec
		want string
	}{
		{launch.Spec{ReadyURL: "http://127.0.0.1:1/status", ReadyAddr: "127.0.0.1:2"}, "GET http://127.0.0.1:1/status"},
		{launch.Spec{ReadyAddr: "127.0.0.1:2"}, "TCP connections on 127.0.0.1:2"},
		{launch.Spec{}, "nothing (ready at once)"},
	}
	for _, c := range cases {
		if got := c.spec.Readiness(); got != c.want {
			t.Errorf("%+v: Readiness() = %q, want %q", c.spec, got, c.want)
		}
	}
}
