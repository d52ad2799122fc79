package loadtest

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// readRSS returns the resident set size of process pid in bytes, from the
// VmRSS line of /proc/PID/status (Linux).
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the broker's memory (--broker-pid %d): %w", pid, err)
	}
	defer f.Close()
	return parseVmRSS(f, pid)
}

func parseVmRSS(f interface{ Read([]byte) (int, error) }, pid int) (int64, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("process %d: unexpected VmRSS line %q", pid, sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("process %d: unexpected VmRSS line %q", pid, sc.Text())
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("process %d: reading status: %w", pid, err)
	}
	return 0, fmt.Errorf("process %d has no VmRSS in /proc/%d/status (a kernel thread or a zombie?)", pid, pid)
}
