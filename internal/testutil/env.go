package testutil

import (
	"os"
	"strings"
)

// Env returns the test's environment with each of vars ("NAME=value") set,
// replacing any value the variable had. When the race detector is on, it
// also shortens the pause a race-enabled binary makes before exiting (one
// second by default) unless GORACE already sets it, so stopping a child built
// by Build does not cost a second each time.
func Env(vars ...string) []string {
	set := map[string]bool{}
	for _, v := range vars {
		name, _, _ := strings.Cut(v, "=")
		set[name] = true
	}
	env := make([]string, 0, len(os.Environ())+len(vars)+1)
	gorace := ""
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if set[name] {
			continue
		}
		if name == "GORACE" {
			gorace = value
			continue
		}
		env = append(env, kv)
	}
	env = append(env, vars...)
	if RaceEnabled && !set["GORACE"] && !strings.Contains(gorace, "atexit_sleep_ms") {
		gorace = strings.TrimSpace(gorace + " atexit_sleep_ms=50")
	}
	if gorace != "" && !set["GORACE"] {
		env = append(env, "GORACE="+gorace)
	}
	return env
}
