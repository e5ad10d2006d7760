//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CPU pinning for the fed relays (-pin). Unpinned, the kernel places the
// relay's threads, the drain's and the speaker's on the two CPUs as it
// likes, and moves them: where it put them was the most of a figure's
// 15-25% drift between one window and the next. Pinned, the relay's
// process runs on one CPU and the drain and the speaker on another, for
// every relay alike, as a load generator is kept off the CPU of the
// system it measures.

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := range 8 * int(unsafe.Sizeof(set)) {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus, nil
}

// setAffinity binds every thread of this process to cpus. A thread the Go
// runtime starts meanwhile inherits the mask of the thread that starts it,
// which may not be bound yet: so it goes round until every thread it
// finds is bound.
func setAffinity(cpus []int) error {
	var want unix.CPUSet
	for _, c := range cpus {
		want.Set(c)
	}
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		changed := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var got unix.CPUSet
			if unix.SchedGetaffinity(tid, &got) == nil && got == want {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &want); err != nil && err != unix.ESRCH { // ESRCH: it has ended
				return fmt.Errorf("sched_setaffinity: %w", err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("sched_setaffinity: threads kept starting unbound")
}

// pinFed pins this process to one CPU and returns the other for the fed
// relays' processes, and a function that unpins this process again. With
// fewer than two CPUs, or cfg saying otherwise, it pins nothing and
// returns no CPU.
func pinFed(cfg *config) (relayCPUs []int, unpin func() error, err error) {
	none := func() error { return nil }
	if !cfg.Pin || cfg.InProcess {
		return nil, none, nil
	}
	all, err := allowedCPUs()
	if err != nil || len(all) < 2 {
		return nil, none, err
	}
	if err := setAffinity(all[:1]); err != nil {
		setAffinity(all)
		return nil, none, err
	}
	return all[1:2], func() error { return setAffinity(all) }, nil
}
