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
// authenticated too. The nonce is the sender's random 32-bit salt and a
// 64-bit counter that starts at a random point below 2^62: two senders
// share a nonce only if they drew the same salt and counters within a few
// billion of each other, and a counter never wraps.
const (
	tSealed      byte = 0x80
	sealHdrLen        = 4 + 1 + 12
	sealOverhead      = sealHdrLen + 16
	replayWindow      = 64 // counters a receiver tracks below the newest
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
	salt  uint32
	count uint64
}

func newSealer(ring *keyring) *sealer {
	id := randomID()
	return &sealer{ring: ring, salt: uint32(id >> 32), count: uint64(uint32(id)) << 30}
}

// sealInPlace seals the n-byte plain datagram at buf[sealHdrLen:] into buf,
// which has room for the tag, and returns the sealed datagram.
func (s *sealer) sealInPlace(buf []byte, n int) []byte {
	s.count++
	buf = buf[:sealHdrLen]
	buf[0], buf[1], buf[2], buf[3], buf[4] = 'U', 'C', wireVersion, tSealed, s.ring.ids[0]
	binary.BigEndian.PutUint32(buf[5:], s.salt)
	binary.BigEndian.PutUint64(buf[9:], s.count)
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
func (k *keyring) open(dst, b []byte) (plain []byte, salt uint32, count uint64, err error) {
	if len(b) < sealOverhead || b[0] != 'U' || b[1] != 'C' || b[2] != wireVersion || b[3] != tSealed {
		return nil, 0, 0, errNotSealed
	}
	nonce, ct := b[5:sealHdrLen], b[sealHdrLen:]
	for i, aead := range k.aeads {
		if k.ids[i] != b[4] {
			continue
		}
		if plain, err = aead.Open(dst[:0], nonce, ct, b[:5]); err == nil {
			return plain, binary.BigEndian.Uint32(b[5:]), binary.BigEndian.Uint64(b[9:]), nil
		}
	}
	return nil, 0, 0, errOpen
}

// replay is a receiver's record of one sender's counters: the newest, and
// which of the replayWindow before it were seen. A counter seen before, or
// older than the window, is a replay (or too late to tell).
type replay struct {
	newest uint64
	seen   uint64 // bit i: newest-i was seen
}

// replayed reports whether count was seen before, or is too old to
// tell, without recording it.
func (r *replay) replayed(count uint64) bool {
	switch {
	case count > r.newest:
		return false
	case r.newest-count >= replayWindow:
		return true
	}
	return r.seen&(1<<(r.newest-count)) != 0
}

// fresh reports whether count is new, and records it.
func (r *replay) fresh(count uint64) bool {
	switch {
	case count > r.newest:
		if d := count - r.newest; d < replayWindow {
			r.seen = r.seen<<d | 1
		} else {
			r.seen = 1
		}
		r.newest = count
		return true
	case r.newest-count >= replayWindow:
		return false
	}
	bit := uint64(1) << (r.newest - count)
	if r.seen&bit != 0 {
		return false
	}
	r.seen |= bit
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
