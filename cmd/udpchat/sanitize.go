package main

import (
	"fmt"
	"hash/fnv"
	"strings"
	"unicode/utf8"
)

// visible returns s with everything a terminal could interpret made
// visible instead: C0 controls and DEL in caret notation (ESC is "^[", so
// CSI and OSC sequences show as "^[[31m" and "^[]0;title^G"), C1 controls,
// bidirectional overrides, isolates and marks, and line and paragraph
// separators as "\u202e", and invalid UTF-8 as "\xff". Text from the
// network passes through here before it reaches a terminal or a pipe.
func visible(s string) string {
	if isClean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x20:
			b.WriteByte('^')
			b.WriteByte(byte(r) + '@')
		case r == 0x7f:
			b.WriteString("^?")
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func isClean(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || r < 0x20 || r == 0x7f || needsEscape(r) {
			return false
		}
		i += n
	}
	return true
}

// needsEscape reports the runes beyond ASCII that must not reach a
// terminal as they are.
func needsEscape(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f: // C1 controls, CSI (U+009B) and OSC (U+009D) among them
		return true
	case r >= 0x202a && r <= 0x202e: // bidi embeddings and overrides
		return true
	case r >= 0x2066 && r <= 0x2069: // bidi isolates
		return true
	case r == 0x200e || r == 0x200f || r == 0x061c: // bidi marks
		return true
	case r == 0x2028 || r == 0x2029: // line and paragraph separators
		return true
	case r == 0xfeff: // zero-width no-break space, a byte order mark
		return true
	}
	return false
}

// nameColours are the SGR colours names are shown in on a terminal. The
// codes are ours; a peer's bytes never reach the terminal unescaped.
var nameColours = []string{
	"\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m",
	"\x1b[91m", "\x1b[92m", "\x1b[93m", "\x1b[94m", "\x1b[95m", "\x1b[96m",
}

const resetColour = "\x1b[0m"

// colourName returns the name made visible and, when colour is on,
// wrapped in the colour its hash picks.
func colourName(name string, colour bool) string {
	v := visible(name)
	if !colour {
		return v
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return nameColours[h.Sum32()%uint32(len(nameColours))] + v + resetColour
}
