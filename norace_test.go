//go:build !race

package udpchat

const raceEnabled = false
