package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// module is the import path of the Granary module.
const module = "github.com/granaryhq/granary"

// A rule says that the packages matched by From must not depend, directly or
// through other packages, on any package matched by one of Forbid. Patterns
// are relative to the module: "actor" is that package only, "actor/..." is it
// and everything below it, and "..." is every package of the module. A
// package group may always depend on itself, so a rule never forbids the
// packages its own From matches.
type rule struct {
	From   string
	Forbid []string
	Why    string
}

// rules is the layering of Granary. A new rule is one line.
var rules = []rule{
	{"actor/...", []string{"gateway/...", "silo/...", "placement/...", "reminders/..."}, "the actor runtime sits below the host, the front door, placement and the reminder scheduler"},
	{"statestore/...", []string{"actor/...", "gateway/...", "silo/..."}, "state stores know nothing about actors or hosting"},
	{"reminders/schedule/...", []string{"..."}, "schedule parsing is self-contained"},
	{"gateway/...", []string{"statestore/boltstore/...", "statestore/redisstore/...", "statestore/memstore/..."}, "the gateway sees the store interface only, never an implementation"},
	{"blocks/...", []string{"gateway/...", "cmd/...", "statestore/boltstore/...", "statestore/redisstore/...", "statestore/memstore/..."}, "the building blocks reach the cluster through the blocks.Actors and blocks.Apps interfaces, and the store through its interface"},
	{"chaos/check/...", []string{"actor/...", "gateway/...", "silo/...", "placement/...", "reminders/...", "statestore/...", "cmd/..."}, "the chaos checkers do not trust the system under test: they read histories only"},
	{"chaos/history/...", []string{"actor/...", "gateway/...", "silo/...", "placement/...", "reminders/...", "statestore/...", "cmd/..."}, "histories are plain records, shared by the suite and its checkers"},
}

// match reports whether the module-relative package path rel matches pattern.
func match(pattern, rel string) bool {
	if pattern == "..." {
		return true
	}
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

// validPattern rejects patterns that would silently match nothing useful.
func validPattern(p string) error {
	switch {
	case p == "":
		return errors.New("empty pattern")
	case p == "...":
		return nil
	case strings.HasPrefix(p, "/"), strings.HasSuffix(p, "/"), strings.HasPrefix(p, module):
		return fmt.Errorf("pattern %q must be relative to the module, without leading or trailing slash", p)
	case strings.Contains(strings.TrimSuffix(p, "/..."), "..."):
		return fmt.Errorf("pattern %q: \"...\" is allowed only as a whole final element", p)
	}
	return nil
}

// graph maps a module-relative package path to the module-relative paths of
// the module packages it depends on, directly or not.
type graph map[string][]string

// violation is one forbidden dependency.
type violation struct {
	Pkg, Dep string
	Rule     rule
}

func (v violation) String() string {
	return fmt.Sprintf("%s depends on %s, but %s may not depend on %s: %s",
		v.Pkg, v.Dep, v.Rule.From, strings.Join(v.Rule.Forbid, ", "), v.Rule.Why)
}

// check returns the rules' violations in g, and the rules whose From matches
// no package of g (a typo, or a package that moved).
func check(rules []rule, g graph) (vs []violation, unmatched []rule) {
	pkgs := make([]string, 0, len(g))
	for p := range g {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	for _, r := range rules {
		matched := false
		for _, p := range pkgs {
			if !match(r.From, p) {
				continue
			}
			matched = true
			for _, d := range g[p] {
				if match(r.From, d) {
					continue
				}
				for _, f := range r.Forbid {
					if match(f, d) {
						vs = append(vs, violation{Pkg: p, Dep: d, Rule: r})
						break
					}
				}
			}
		}
		if !matched {
			unmatched = append(unmatched, r)
		}
	}
	return vs, unmatched
}

// listPackage is the part of `go list -json` output the test reads.
type listPackage struct {
	ImportPath string
	Deps       []string
	Error      *struct{ Err string }
}

// loadGraph asks the go command for the module's packages and their
// dependencies (non-test code, for the current GOOS and GOARCH).
func loadGraph(t *testing.T) (graph, map[string]string) {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("SKIPPED: the layering test needs the go command on PATH: %v", err)
	}
	cmd := exec.Command(goCmd, "list", "-e", "-json=ImportPath,Deps,Error", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	g := graph{}
	broken := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		rel, ok := relative(p.ImportPath)
		if !ok {
			continue
		}
		var deps []string
		for _, d := range p.Deps {
			if r, ok := relative(d); ok {
				deps = append(deps, r)
			}
		}
		g[rel] = deps
		if p.Error != nil {
			broken[rel] = p.Error.Err
		}
	}
	if len(g) == 0 {
		t.Fatalf("go list found no packages of %s", module)
	}
	return g, broken
}

// relative returns the module-relative path of a module package.
func relative(importPath string) (string, bool) {
	if importPath == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(importPath, module+"/")
	return rel, ok
}

func TestRulesAreWellFormed(t *testing.T) {
	for _, r := range rules {
		if err := validPattern(r.From); err != nil {
			t.Errorf("rule %q: %v", r.From, err)
		}
		if len(r.Forbid) == 0 || r.Why == "" {
			t.Errorf("rule %q: needs forbidden patterns and a reason", r.From)
		}
		for _, f := range r.Forbid {
			if err := validPattern(f); err != nil {
				t.Errorf("rule %q: %v", r.From, err)
			}
		}
	}
}

func TestLayering(t *testing.T) {
	g, broken := loadGraph(t)
	for _, r := range rules {
		for p, msg := range broken {
			if match(r.From, p) {
				t.Errorf("package %s does not load, so its dependencies are uncertain: %s", p, msg)
			}
		}
	}
	vs, unmatched := check(rules, g)
	for _, v := range vs {
		t.Error(v)
	}
	for _, r := range unmatched {
		t.Errorf("rule %q matches no package of the module", r.From)
	}
}

// TestCheckFindsViolations runs the checker on made-up graphs, so that a
// broken rule is known to fail the test without committing a broken import.
func TestCheckFindsViolations(t *testing.T) {
	clean := graph{
		"actor":                  {"internal/clock", "statestore"},
		"actor/callback":         {"actor", "internal/clock", "statestore"},
		"statestore":             nil,
		"statestore/boltstore":   {"statestore", "internal/clock"},
		"statestore/memstore":    {"statestore"},
		"statestore/redisstore":  {"statestore"},
		"reminders":              {"actor", "reminders/schedule", "statestore"},
		"reminders/schedule":     nil,
		"silo":                   {"actor", "actor/callback", "reminders", "reminders/schedule", "statestore"},
		"gateway":                {"actor", "silo", "statestore", "reminders", "reminders/schedule"},
		"cmd/granary":            {"gateway", "silo", "statestore/boltstore", "statestore/redisstore"},
		"internal/clock":         nil,
		"placement":              {"actor"},
		"reminders/schedule/sub": {"reminders/schedule"},
		"chaos/history":          nil,
		"chaos/check":            {"chaos/history"},
		"blocks/state":           {"blocks", "actor", "statestore"},
	}
	if vs, unmatched := check(rules, clean); len(vs) != 0 || len(unmatched) != 0 {
		t.Fatalf("clean graph: violations %v, unmatched rules %v", vs, unmatched)
	}

	breaks := []struct {
		pkg, dep string
	}{
		{"actor", "gateway"},
		{"blocks/state", "gateway"},
		{"actor", "silo"},
		{"actor/callback", "silo"},
		{"actor", "placement"},
		{"actor/callback", "placement/ring"},
		{"actor", "reminders"},
		{"actor", "reminders/schedule"},
		{"statestore", "actor"},
		{"statestore/boltstore", "actor/callback"},
		{"statestore/storetest", "gateway"},
		{"statestore/redisstore", "silo"},
		{"reminders/schedule", "internal/clock"},
		{"reminders/schedule", "statestore"},
		{"reminders/schedule/sub", "actor"},
		{"gateway", "statestore/boltstore"},
		{"gateway", "statestore/redisstore"},
		{"gateway", "statestore/memstore"},
		{"gateway/grpc", "statestore/memstore"},
		{"chaos/check", "statestore"},
		{"chaos/check", "placement/ring"},
		{"chaos/history", "actor"},
	}
	for _, b := range breaks {
		g := graph{}
		for p, deps := range clean {
			g[p] = slices.Clone(deps)
		}
		g[b.pkg] = append(g[b.pkg], b.dep)
		vs, _ := check(rules, g)
		if len(vs) != 1 || vs[0].Pkg != b.pkg || vs[0].Dep != b.dep {
			t.Errorf("%s → %s: violations %v, want exactly that one", b.pkg, b.dep, vs)
		}
	}

	// Allowed edges stay allowed.
	for _, ok := range []struct{ pkg, dep string }{
		{"actor", "actor/callback"},
		{"silo", "statestore/boltstore"},
		{"gateway", "silo"},
		{"statestore/memstore", "statestore/storetest"},
		{"actorx", "gateway"}, // not under actor/
	} {
		g := graph{}
		for p, deps := range clean {
			g[p] = slices.Clone(deps)
		}
		g[ok.pkg] = append(g[ok.pkg], ok.dep)
		if vs, _ := check(rules, g); len(vs) != 0 {
			t.Errorf("%s → %s: unexpected violations %v", ok.pkg, ok.dep, vs)
		}
	}

	// A rule about a package that does not exist is reported.
	_, unmatched := check([]rule{{From: "no/such/...", Forbid: []string{"..."}, Why: "x"}}, clean)
	if len(unmatched) != 1 {
		t.Errorf("rule on a missing package: unmatched %v", unmatched)
	}
}

func TestMatch(t *testing.T) {
	rows := []struct {
		pattern, rel string
		want         bool
	}{
		{"actor", "actor", true},
		{"actor", "actor/callback", false},
		{"actor/...", "actor", true},
		{"actor/...", "actor/callback", true},
		{"actor/...", "actors", false},
		{"actor/...", "actorx/y", false},
		{"statestore/boltstore/...", "statestore/boltstore", true},
		{"statestore/boltstore/...", "statestore", false},
		{"...", "anything/at/all", true},
	}
	for _, r := range rows {
		if got := match(r.pattern, r.rel); got != r.want {
			t.Errorf("match(%q, %q) = %v, want %v", r.pattern, r.rel, got, r.want)
		}
	}
	for _, bad := range []string{"", "/actor", "actor/", module + "/actor", "actor...", "a/.../b"} {
		if validPattern(bad) == nil {
			t.Errorf("validPattern(%q) accepted a bad pattern", bad)
		}
	}
}
