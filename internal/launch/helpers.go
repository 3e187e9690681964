package launch

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
)

// FreePorts returns n distinct TCP ports on 127.0.0.1 that nothing listened
// on a moment ago: it holds n listeners open at once, so the kernel cannot
// hand out the same port twice, then closes them. It prefers ports below
// Linux's default range of ephemeral ports (32768 on), which the kernel
// never picks as the local port of an outgoing connection, so a connection
// made while the cluster starts cannot take one; it falls back to a port
// the kernel picks. Another process may still bind one before the caller
// does.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	for range n {
		ln, err := listenLowPort()
		if err != nil {
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return nil, fmt.Errorf("finding a free port: %w", err)
			}
		}
		listeners = append(listeners, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// The range listenLowPort draws from.
const lowPortMin, lowPortMax = 20000, 32768

// listenLowPort listens on a random free port of [lowPortMin, lowPortMax).
func listenLowPort() (net.Listener, error) {
	var err error
	for range 50 {
		port := lowPortMin + rand.IntN(lowPortMax-lowPortMin)
		var ln net.Listener
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			return ln, nil
		}
	}
	return nil, err
}

// ConsecutivePorts returns n ports from base on.
func ConsecutivePorts(base, n int) []int {
	ports := make([]int, n)
	for i := range ports {
		ports[i] = base + i
	}
	return ports
}

// ShellArgv runs cmd with /bin/sh. A simple command (words only, no shell
// syntax) is exec'd by the shell, so the process started, signalled and
// listed is the command itself rather than a shell around it.
func ShellArgv(cmd string) []string {
	if strings.ContainsAny(cmd, ";&|<>()$`\\\"'*?[]#~=%{}!\n") {
		return []string{"/bin/sh", "-c", cmd}
	}
	return []string{"/bin/sh", "-c", "exec " + cmd}
}

// EnvWith returns base with each NAME=value of set replacing any value NAME
// has; the names set come last, in the order of set.
func EnvWith(base, set []string) []string {
	replaced := map[string]bool{}
	for _, kv := range set {
		name, _, _ := strings.Cut(kv, "=")
		replaced[name] = true
	}
	env := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		if name, _, _ := strings.Cut(kv, "="); !replaced[name] {
			env = append(env, kv)
		}
	}
	return append(env, set...)
}
