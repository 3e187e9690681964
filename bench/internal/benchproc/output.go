package benchproc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Main runs a command's run function with its arguments and standard
// output, under a context cancelled by Ctrl-C or SIGTERM, and exits with the
// status run returns.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) int) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Executable reports whether path is a file that may be executed.
func Executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Progress writes one progress line to w: the time of day, then the
// formatted message.
func Progress(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Verdict returns PASS or FAIL.
func Verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// Ratio returns a/b, or 0 when b is not positive.
func Ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// MiB formats a size in bytes as mebibytes with one decimal: "30.0 MiB".
func MiB(bytes int64) string {
	return strconv.FormatFloat(float64(bytes)/(1<<20), 'f', 1, 64) + " MiB"
}

// Target is one target of a benchmark with the value measured against it.
type Target struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Pass  bool   `json:"pass"`
}

// AllPass reports whether every target passed.
func AllPass(targets []Target) bool {
	for _, t := range targets {
		if !t.Pass {
			return false
		}
	}
	return true
}

// PrintTargets writes the targets, one a line with its verdict and its name
// padded to nameWidth, and then the overall verdict.
func PrintTargets(w io.Writer, targets []Target, nameWidth int, pass bool) {
	fmt.Fprintln(w, "\ntargets:")
	for _, t := range targets {
		fmt.Fprintf(w, "  %s  %-*s %s\n", Verdict(t.Pass), nameWidth, t.Name, t.Value)
	}
	fmt.Fprintf(w, "overall: %s\n", Verdict(pass))
}

// WriteJSON writes v, indented, to the file at path.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// Finish ends a benchmark command: it prints the report, writes it as JSON
// to jsonPath when that is set, and returns the exit status: 1 when the
// JSON cannot be written or, with strict, when a target was missed.
func Finish(name string, stdout, stderr io.Writer, report any, print func(io.Writer), jsonPath string, strict, pass bool) int {
	print(stdout)
	if jsonPath != "" {
		if err := WriteJSON(jsonPath, report); err != nil {
			fmt.Fprintln(stderr, name+":", err)
			return 1
		}
		fmt.Fprintln(stdout, "results written to", jsonPath)
	}
	if strict && !pass {
		return 1
	}
	return 0
}

// Failed reports a benchmark that could not run to its end and returns the
// exit status: 130 when ctx ended (Ctrl-C; the processes are stopped by
// then), else 1.
func Failed(ctx context.Context, name string, stderr io.Writer, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, name+": interrupted; processes stopped")
		return 130
	}
	fmt.Fprintln(stderr, name+":", err)
	return 1
}
