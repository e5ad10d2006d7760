//go:build !linux && !windows

package udpchat

// isMsgSize reports a datagram longer than the buffer read into; here the
// read truncates it instead, and the caller sees the full buffer.
func isMsgSize(error) bool { return false }
