package benchproc

import (
	"os"
	"strings"
	"testing"
)

func TestParseStatus(t *testing.T) {
	status := "Name:\tgranary\nState:\tS (sleeping)\nVmPeak:\t 1300000 kB\nVmHWM:\t   35840 kB\nVmRSS:\t  524288 kB\n" +
		"RssAnon:\t  400000 kB\nRssFile:\t  124288 kB\nThreads:\t8\nSigQ:\t0/95000\n"
	got, err := ParseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if got["VmRSS"] != 512<<20 || got["VmHWM"] != 35840<<10 || got["RssAnon"] != 400000<<10 || got["RssFile"] != 124288<<10 {
		t.Errorf("parsed %v", got)
	}
	if _, ok := got["Threads"]; ok {
		t.Error("a field without kB was taken")
	}
	if got, err := ParseStatus(strings.NewReader("VmRSS:\t 100 kB\n")); err != nil || got["VmRSS"] != 100<<10 || got["VmHWM"] != 0 {
		t.Errorf("status without a peak: %v, %v", got, err)
	}

	bad := []struct {
		name, in, errSub string
	}{
		{"missing", "Name:\tgranary\nRssAnon:\t1 kB\n", "no VmRSS"},
		{"odd unit", "VmRSS:\t 100 MB\n", "unexpected VmRSS line"},
		{"not a number", "VmRSS:\t 1x0 kB\n", "unexpected VmRSS value"},
		{"negative", "VmRSS:\t -5 kB\n", "unexpected VmRSS value"},
		{"other field not a number", "VmRSS:\t 100 kB\nVmHWM:\t 12x kB\n", "unexpected VmHWM value"},
	}
	for _, tt := range bad {
		if got, err := ParseStatus(strings.NewReader(tt.in)); err == nil || !strings.Contains(err.Error(), tt.errSub) {
			t.Errorf("%s: got %v, %v; want an error containing %q", tt.name, got, err, tt.errSub)
		}
	}
}

func TestRSSOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("NO /proc ON THIS SYSTEM: process memory cannot be read here")
	}
	cur, peak, err := RSS(os.Getpid())
	if err != nil || cur < 1<<20 || peak < cur {
		t.Fatalf("rss = %d, %d, %v", cur, peak, err)
	}
	st, err := Status(os.Getpid())
	if err != nil || st["VmRSS"] < 1<<20 {
		t.Fatalf("status = %v, %v", st, err)
	}
}

func TestRSSOfNoProcess(t *testing.T) {
	if _, _, err := RSS(-1); err == nil || !strings.Contains(err.Error(), "reading memory of pid -1") {
		t.Errorf("RSS of a pid that cannot exist: %v", err)
	}
}
