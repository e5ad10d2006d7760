package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// keyEnv is the environment variable a group key is read from when no
// -key-file is given.
const keyEnv = "UDPCHAT_KEY"

// runKeygen writes a new random 32-byte key, in hex, to -o (created with
// mode 0600, never overwritten) or to standard output.
func runKeygen(_ context.Context, args []string) error {
	fs := newFlagSet("keygen", "[-o FILE]")
	out := fs.String("o", "", "write the key to this `file` (mode 0600; an existing file is refused) instead of standard output")
	if err := parse(fs, args); err != nil {
		return err
	}
	key := make([]byte, 32)
	rand.Read(key) // never fails; see crypto/rand
	text := hex.EncodeToString(key) + "\n"
	if *out == "" {
		_, err := os.Stdout.WriteString(text)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting a key", *out)
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(*out)
		return err
	}
	return f.Close()
}

// keyFlag adds -key-file to fs.
func keyFlag(fs *flag.FlagSet) *string {
	return fs.String("key-file", "", "read the group key from this `file` (else from $"+keyEnv+"); see \"udpchat help\"")
}

// loadKeys returns the group keys from file or, when file is "", from
// $UDPCHAT_KEY; none when neither is given. The first key seals, the others
// (further lines of the file, or further words of the variable) only open,
// for changing keys without losing messages.
func loadKeys(file string) ([][]byte, error) {
	var text, from string
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		if runtime.GOOS != "windows" {
			if st, err := os.Stat(file); err == nil && st.Mode().Perm()&0o077 != 0 {
				fmt.Fprintf(os.Stderr, "udpchat: warning: key file %s is readable by others (mode %v); chmod 600 it\n", file, st.Mode().Perm())
			}
		}
		text, from = string(b), file
	} else if v, ok := os.LookupEnv(keyEnv); ok {
		text, from = v, "$"+keyEnv
	} else {
		return nil, nil
	}
	var keys [][]byte
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		k, err := decodeKey(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: key %d: %w", from, len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key", from)
	}
	return keys, nil
}

// decodeKey decodes one key written in hex or base64 (standard or URL
// alphabet, padded or not) and checks its length.
func decodeKey(s string) ([]byte, error) {
	decoded := false
	try := func(b []byte, err error) []byte {
		if err != nil {
			return nil
		}
		decoded = true
		switch len(b) {
		case 16, 24, 32:
			return b
		}
		return nil
	}
	if k := try(hex.DecodeString(s)); k != nil {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k := try(enc.DecodeString(s)); k != nil {
			return k, nil
		}
	}
	if !decoded {
		return nil, errors.New("neither hex nor base64")
	}
	return nil, errors.New("wrong length; a key has 16, 24 or 32 bytes (\"udpchat keygen\" makes one)")
}
