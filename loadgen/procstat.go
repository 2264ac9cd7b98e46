package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ServerUsage is a local server process's CPU time and resident memory over
// a subscribe run, read from /proc (Linux).
type ServerUsage struct {
	PID        int     `json:"pid"`
	Seconds    float64 `json:"duration_s"`
	CPUSeconds float64 `json:"cpu_s"`       // user plus system
	CPUPercent float64 `json:"cpu_percent"` // of one core
	RSSPeakMiB float64 `json:"rss_peak_mib"`
	RSSEndMiB  float64 `json:"rss_end_mib"`
	Error      string  `json:"error,omitempty"`
}

const (
	// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
	// Linux architecture Go supports.
	userHZ       = 100
	usageSampler = 250 * time.Millisecond
)

// startUsage samples process pid until the returned function is called,
// which returns the usage (nil for pid 0).
func startUsage(pid int) func() *ServerUsage {
	if pid == 0 {
		return func() *ServerUsage { return nil }
	}
	u := &ServerUsage{PID: pid}
	start := time.Now()
	cpu0, err := procCPU(pid)
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(usageSampler)
		defer t.Stop()
		for {
			if rss, err := procRSS(pid); err == nil {
				u.RSSPeakMiB, u.RSSEndMiB = max(u.RSSPeakMiB, rss), rss
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() *ServerUsage {
		close(done)
		<-finished
		u.Seconds = time.Since(start).Seconds()
		cpu1, err1 := procCPU(pid)
		if err = errors.Join(err, err1); err != nil {
			u.Error = err.Error()
			return u
		}
		u.CPUSeconds = cpu1 - cpu0
		u.CPUPercent = 100 * u.CPUSeconds / u.Seconds
		return u
	}
}

// procCPU is the process's user plus system time in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return float64(ut+st) / userHZ, nil
}

// procRSS is the process's resident set in MiB (VmRSS).
func procRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusRSS(b)
}

func parseStatusRSS(b []byte) (float64, error) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("/proc status VmRSS: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("/proc status: no VmRSS")
}
