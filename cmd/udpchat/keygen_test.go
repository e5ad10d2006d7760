package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestKeygen makes a key file, checks its mode and that it is not
// overwritten, and chats through a relay with it: from the file and from
// $UDPCHAT_KEY; a chat without the key cannot join.
func TestKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "group.key")
	if code := start(t, nil, "keygen", "-o", file).wait(t); code != 0 {
		t.Fatalf("keygen exited with %d", code)
	}
	key, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := decodeKey(strings.TrimSpace(string(key))); err != nil || len(k) != 32 {
		t.Fatalf("key file %q: %v", key, err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	again := start(t, nil, "keygen", "-o", file)
	if code := again.wait(t); code != 1 || !strings.Contains(again.stderr.String(), "not overwriting") {
		t.Errorf("keygen over an existing file: exit %d, %q", code, again.stderr)
	}
	if now, _ := os.ReadFile(file); !bytes.Equal(now, key) {
		t.Error("keygen changed an existing key file")
	}

	relay, addr := startRelay(t, nil, "-key-file", file)
	alice := joinLine(t, nil, addr, "alice", "-key-file", file)
	bob := joinLine(t, []string{keyEnv + "=" + string(key)}, addr, "bob")
	bob.send(t, "sealed hello\n")
	alice.waitLine(t, "bob: sealed hello")

	t.Setenv(keyEnv, "") // and unset: not inherited by the programs below
	os.Unsetenv(keyEnv)
	stranger := start(t, nil, "chat", "-addr", addr, "-name", "eve", "-timeout", "500ms")
	if code := stranger.wait(t); code != 1 || !strings.Contains(stranger.stderr.String(), "relay unreachable") {
		t.Errorf("a chat without the key: exit %d, %q", code, stranger.stderr)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	start(t, nil, "keygen", "-o", other).wait(t)
	wrong := start(t, nil, "chat", "-addr", addr, "-name", "eve", "-timeout", "500ms", "-key-file", other)
	if code := wrong.wait(t); code != 1 || !strings.Contains(wrong.stderr.String(), "with the same key?") {
		t.Errorf("a chat with another key: exit %d, %q", code, wrong.stderr)
	}

	alice.stdin.Close()
	alice.wait(t)
	bob.stdin.Close()
	bob.wait(t)
	stopRelay(t, relay)
}

func TestDecodeKey(t *testing.T) {
	k32 := bytes.Repeat([]byte{0xa5}, 32)
	k16 := bytes.Repeat([]byte{0x5a}, 16)
	for _, s := range []string{
		hex.EncodeToString(k32),
		strings.ToUpper(hex.EncodeToString(k32)),
		base64.StdEncoding.EncodeToString(k32),
		base64.RawURLEncoding.EncodeToString(k32),
		hex.EncodeToString(k16),
		base64.StdEncoding.EncodeToString(k16),
	} {
		k, err := decodeKey(s)
		if err != nil || !(bytes.Equal(k, k32) || bytes.Equal(k, k16)) {
			t.Errorf("decodeKey(%q) = %x, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "xyz!", hex.EncodeToString(k32[:20]), base64.StdEncoding.EncodeToString(k32[:31])} {
		if k, err := decodeKey(s); err == nil {
			t.Errorf("decodeKey(%q) = %x, want an error", s, k)
		}
	}
}

func TestLoadKeysRotation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	content := hex.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 16)) + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := loadKeys(file)
	if err != nil || len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Errorf("loadKeys = %x, %v", keys, err)
	}
	t.Setenv(keyEnv, "")
	if _, err := loadKeys(""); err == nil {
		t.Errorf("an empty $%s: no error", keyEnv)
	}
}
