package benchproc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Status returns the fields of /proc/<pid>/status given in kB, in bytes
// (see ParseStatus).
func Status(pid int) (map[string]uint64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseStatus(f)
}

// ParseStatus reads the fields given in kB ("VmRSS:    31232 kB") from the
// text of /proc/<pid>/status and returns them in bytes by name. VmRSS must be
// among them.
func ParseStatus(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) != 2 || fields[1] != "kB" {
			if name == "VmRSS" {
				return nil, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
			}
			continue
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unexpected %s value %q", name, fields[0])
		}
		out[name] = kb << 10
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, errors.New("no VmRSS in process status")
	}
	return out, nil
}

// RSS returns the resident and peak resident set sizes (VmRSS and VmHWM) of
// a process, in bytes; peak is 0 when the system does not say.
func RSS(pid int) (current, peak int64, err error) {
	st, err := Status(pid)
	if err != nil {
		return 0, 0, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	return int64(st["VmRSS"]), int64(st["VmHWM"]), nil
}
