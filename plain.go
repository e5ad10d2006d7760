package udpchat

import (
	"bytes"
	"unicode/utf8"
)

// Plain-text mode (WithPlainText): datagrams are lines "name: text", as
// the classic programs and nc -u send them. The relay forwards them; it
// keeps no protocol state, only the addresses it forwards to.

// parsePlain splits a plain line into its name and text, taking one
// space after the colon and one trailing newline off. It reports false
// for anything that is not valid UTF-8 with a valid name.
func parsePlain(b []byte) (name, text []byte, ok bool) {
	i := bytes.IndexByte(b, ':')
	if i < 0 || !utf8.Valid(b) {
		return nil, nil, false
	}
	name, text = b[:i], b[i+1:]
	text, _ = bytes.CutPrefix(text, []byte(" "))
	if t, nl := bytes.CutSuffix(text, []byte("\n")); nl {
		text, _ = bytes.CutSuffix(t, []byte("\r"))
	}
	return name, text, checkName(string(name)) == nil
}
