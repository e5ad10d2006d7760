package udpchat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// With a group key (WithKey) every datagram is sealed with AES-GCM:
//
//	"UC" | version | tSealed | key id u8 | nonce [12] | ciphertext | tag [16]
//
// The ciphertext is the whole plain datagram; the first five bytes are
// authenticated too. The nonce is the sender's random 64-bit salt and a
// 32-bit counter, so senders never share a nonce under one key.
const (
	tSealed      byte = 0x80
	sealHdrLen        = 4 + 1 + 12
	sealOverhead      = sealHdrLen + 16
	maxSealCount      = 1<<32 - 1
)

var (
	errNotSealed = errors.New("not sealed with the group key")
	errOpen      = errors.New("does not open with any group key")
)

// keyring holds the group keys: the first seals, every one opens.
type keyring struct {
	aeads []cipher.AEAD
	ids   []byte // the first byte of each key's SHA-256, to pick the key
}

func newKeyring(keys [][]byte) (*keyring, error) {
	k := &keyring{}
	for i, key := range keys {
		switch len(key) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("key %d is %d bytes, want 16, 24 or 32", i, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(key)
		k.aeads = append(k.aeads, aead)
		k.ids = append(k.ids, sum[0])
	}
	return k, nil
}

// sealer seals one sender's datagrams. It is not safe for concurrent use.
type sealer struct {
	ring  *keyring
	salt  uint64
	count uint32
}

func newSealer(ring *keyring) *sealer {
	s := &sealer{ring: ring}
	s.resalt()
	return s
}

func (s *sealer) resalt() {
	s.salt, s.count = randomID(), 0
}

// sealInPlace seals the n-byte plain datagram at buf[sealHdrLen:] into buf,
// which has room for the tag, and returns the sealed datagram.
func (s *sealer) sealInPlace(buf []byte, n int) []byte {
	if s.count == maxSealCount {
		s.resalt() // a fresh salt keeps nonces unique; receivers learn it anew
	}
	s.count++
	buf = buf[:sealHdrLen]
	buf[0], buf[1], buf[2], buf[3], buf[4] = 'U', 'C', wireVersion, tSealed, s.ring.ids[0]
	binary.BigEndian.PutUint64(buf[5:], s.salt)
	binary.BigEndian.PutUint32(buf[13:], s.count)
	plain := buf[sealHdrLen : sealHdrLen+n]
	s.ring.aeads[0].Seal(plain[:0], buf[5:sealHdrLen], plain, buf[:5])
	return buf[:sealHdrLen+n+16]
}

// seal returns b sealed in a new buffer.
func (s *sealer) seal(b []byte) []byte {
	buf := make([]byte, sealHdrLen+len(b), sealHdrLen+len(b)+16)
	copy(buf[sealHdrLen:], b)
	return s.sealInPlace(buf, len(b))
}

// open opens a sealed datagram into dst (which must not overlap b) and
// returns the plain datagram and the sender's salt and counter.
func (k *keyring) open(dst, b []byte) (plain []byte, salt uint64, count uint32, err error) {
	if len(b) < sealOverhead || b[0] != 'U' || b[1] != 'C' || b[2] != wireVersion || b[3] != tSealed {
		return nil, 0, 0, errNotSealed
	}
	nonce, ct := b[5:sealHdrLen], b[sealHdrLen:]
	for i, aead := range k.aeads {
		if k.ids[i] != b[4] {
			continue
		}
		if plain, err = aead.Open(dst[:0], nonce, ct, b[:5]); err == nil {
			return plain, binary.BigEndian.Uint64(b[5:]), binary.BigEndian.Uint32(b[13:]), nil
		}
	}
	return nil, 0, 0, errOpen
}

// freshCount reports whether count is newer than the last one taken from a
// sender's salt, and takes it. Datagrams that are deduplicated by their own
// numbers (chats, delivers) skip this: they may be resent and reordered.
func freshCount(last *uint32, count uint32) bool {
	if count <= *last {
		return false
	}
	*last = count
	return true
}

// sealPrefix is where a plain datagram starts in a buffer it will be
// sealed in: after the sealed header, or at 0 without a key.
func sealPrefix(s *sealer) int {
	if s == nil {
		return 0
	}
	return sealHdrLen
}
