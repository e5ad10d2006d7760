//go:build race

package main

import "os"

// Under -race the binary the tests run is built with -race too, and does not
// sleep a second at exit, as the race runtime does by default. (GORACE is
// read when a program starts, so this is for the programs the tests start.)
func init() {
	buildFlags = append(buildFlags, "-race")
	os.Setenv("GORACE", "atexit_sleep_ms=0")
}
