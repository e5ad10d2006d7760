package main

import (
	"os/exec"
	"strings"
	"testing"
)

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"hello, wörld ✓":              "hello, wörld ✓",
		"\x1b]0;pwned\x07":            "^[]0;pwned^G",
		"\x1b[31mred\x1b[0m":          "^[[31mred^[[0m",
		"a\tb\r\nc\x00\x7f":           "a^Ib^M^Jc^@^?",
		"\u009b31m \u009d0;t\u009c":   `\u009b31m \u009d0;t\u009c`,
		"abc\u202edcba\u202c":         `abc\u202edcba\u202c`,
		"\u2066x\u2069 \u200f \u2028": `\u2066x\u2069 \u200f \u2028`,
		"bad \xff\xfe utf-8":          `bad \xff\xfe utf-8`,
	} {
		if got := visible(in); got != want {
			t.Errorf("visible(%q) = %q, want %q", in, got, want)
		}
	}
	if got := colourName("a\x1bb", true); strings.Count(got, "\x1b") != 2 || !strings.Contains(got, "a^[b") {
		t.Errorf("colourName = %q: only its own two escapes may be in it", got)
	}
}

// TestLibraryDeps: the programs' dependencies never enter the library's
// import graph.
func TestLibraryDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/udpchat/udpchat").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "golang.org/x/term") || strings.HasPrefix(dep, "github.com/prometheus") {
			t.Errorf("the library package depends on %s", dep)
		}
	}
}
