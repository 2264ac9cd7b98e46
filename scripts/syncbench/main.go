// Command syncbench measures what decided shard.SyncRounds' shared syncs
// (issue 16): N files each get a small append, then either N fdatasyncs in
// parallel or one syncfs, for 1 to 256 files. It prints wall time and this
// process's CPU per round, CPU per file, and the whole machine's busy CPU per
// file (/proc/stat, 10 ms ticks: coarse, but it counts the kernel threads
// that a syncfs may hand writeback to).
//
//	go run ./scripts/syncbench [DIR]   # DIR on the filesystem to measure; default /tmp/syncbench
package main

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func cpu() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sys() time.Duration {
	b, _ := os.ReadFile("/proc/stat")
	var name string
	var v [10]int64
	fmt.Sscan(string(b), &name, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7])
	busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return time.Duration(busy) * 10 * time.Millisecond
}

func main() {
	dir := "/tmp/syncbench"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	for _, n := range []int{1, 4, 16, 64, 256} {
		files := make([]*os.File, n)
		for i := range files {
			f, _ := os.Create(fmt.Sprintf("%s/f%d-%d", dir, n, i))
			files[i] = f
		}
		buf := make([]byte, 1100)
		rounds := 400
		for mode := 0; mode < 2; mode++ {
			t0, c0, s0 := time.Now(), cpu(), sys()
			for r := 0; r < rounds; r++ {
				for _, f := range files {
					f.Write(buf)
				}
				if mode == 0 {
					var wg sync.WaitGroup
					for _, f := range files {
						wg.Add(1)
						go func(f *os.File) { defer wg.Done(); unix.Fdatasync(int(f.Fd())) }(f)
					}
					wg.Wait()
				} else {
					unix.Syncfs(int(files[0].Fd()))
				}
			}
			el, c, sc := time.Since(t0), cpu()-c0, sys()-s0
			name := []string{"fdatasync-par", "syncfs"}[mode]
			fmt.Printf("n=%3d %-14s wall/round %8v cpu/round %8v cpu/record %v machine-cpu/record %v\n", n, name, el/time.Duration(rounds), c/time.Duration(rounds), c/time.Duration(rounds*n), sc/time.Duration(rounds*n))
		}
	}
}
