package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
)

// ModuleRoot returns the directory of the go.mod that holds the current
// working directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// Build compiles the main packages pkgs (module-relative, like
// "./cmd/granary") with one `go build` into outDir, and returns the path of
// each executable keyed by its package path as given. When this binary runs
// with the race detector, so do the built ones. It runs the go command found
// on PATH (`go test` puts its own first).
func Build(outDir string, pkgs ...string) (map[string]string, error) {
	if len(pkgs) == 0 {
		return nil, errors.New("testutil.Build: no packages")
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command is not on PATH: %w", err)
	}
	args := []string{"build", "-o", outDir + string(filepath.Separator)}
	if RaceEnabled {
		args = append(args, "-race")
	}
	args = append(args, pkgs...)
	cmd := exec.Command(goCmd, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	bins := make(map[string]string, len(pkgs))
	for _, p := range pkgs {
		name := path.Base(strings.TrimSuffix(p, "/"))
		if exe := filepath.Join(outDir, name+exeSuffix()); fileExists(exe) {
			bins[p] = exe
		} else {
			return nil, fmt.Errorf("go build of %s produced no %s", p, exe)
		}
	}
	return bins, nil
}

func exeSuffix() string {
	if runtime.GOOS == "windows" {
		return ".exe"
	}
	return ""
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
