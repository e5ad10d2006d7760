//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CPU pinning for the fed relays (-pin). Unpinned, the kernel places the
// relay's threads, the drain's and the speaker's on the two CPUs as it
// likes, and moves them: where it put them was most of a figure's
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
// which may not be bound yet, and one still being cloned is not listed
// yet: so it goes round until two rounds in a row find every thread bound.
func setAffinity(cpus []int) error {
	var want unix.CPUSet
	for _, c := range cpus {
		want.Set(c)
	}
	clean := 0
	for range 20 {
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
		if changed {
			clean = 0
		} else if clean++; clean == 2 {
			return nil
		}
	}
	return fmt.Errorf("sched_setaffinity: threads kept starting unbound")
}

// pinFed pins this process to one CPU and returns the other for the fed
// relays' processes, and a function that unpins this process again. With
// fewer than two CPUs, or cfg saying otherwise, it pins nothing and
// returns no CPU.
//
// The Go runtime sizes GOMAXPROCS by the CPUs a process may run on, and
// follows a change: pinned, this process would drop to one P, and its
// speaker would wait for the P the drain's thread holds in epoll_wait. So
// its GOMAXPROCS is held where it was while pinned, and then given back
// to the runtime's default, unless the environment set it. A relay's
// process, on its one CPU, runs with one P, as the runtime gives it.
func pinFed(cfg *config) (relayCPUs []int, unpin func() error, err error) {
	none := func() error { return nil }
	if !cfg.Pin || cfg.InProcess {
		return nil, none, nil
	}
	all, err := allowedCPUs()
	if err != nil || len(all) < 2 {
		return nil, none, err
	}
	procs := runtime.GOMAXPROCS(0)
	restore := func() error {
		err := setAffinity(all)
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.SetDefaultGOMAXPROCS()
		} else {
			runtime.GOMAXPROCS(procs)
		}
		return err
	}
	runtime.GOMAXPROCS(procs) // set, it no longer follows the CPUs
	if err := setAffinity(all[:1]); err != nil {
		restore()
		return nil, none, err
	}
	return all[1:2], restore, nil
}
