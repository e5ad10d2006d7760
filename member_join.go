package udpchat

// A member's way into the group, on the member: the handshake (JOIN,
// COOKIE, WELCOME), refusals, rejoining after the relay is lost, and
// failing for good.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// join waits for the welcome and the member list.
func (m *memberSession) join(ctx context.Context) error {
	select {
	case <-m.joined:
		m.cfg.logger.Info("udpchat joined", "name", m.name, "relay", m.cfg.addr.String())
		return nil
	case <-m.failed:
	case <-ctx.Done():
	}
	m.mu.Lock()
	state, failErr, lastErr, welcomed := m.state, m.failErr, m.lastErr, m.inc != 0
	m.mu.Unlock()
	m.Close()
	switch {
	case state == stateFailed:
		return failErr
	case welcomed:
		return fmt.Errorf("udpchat: join: loading the member list: %w", ctx.Err())
	case lastErr != nil:
		return fmt.Errorf("%w at %s (%w): %w", ErrRelayUnreachable, m.cfg.addr, lastErr, ctx.Err())
	case m.cfg.keys != nil:
		// A relay answers nothing it cannot open, so a key it does not
		// hold looks like no relay at all.
		return fmt.Errorf("%w at %s (no answer: the relay is not running, or does not hold our key): %w", ErrRelayUnreachable, m.cfg.addr, ctx.Err())
	}
	return fmt.Errorf("%w at %s: %w", ErrRelayUnreachable, m.cfg.addr, ctx.Err())
}

// welcome completes a join or a rejoin.
func (m *memberSession) welcome(p *packet, now time.Time) {
	first := m.inc == 0
	restarted := !first && p.id != m.inc
	if restarted {
		// A new relay numbers anew, from 1 for members of the old one.
		m.stats.Missed += m.in.newRelay(m.out.stable)
	}
	switch {
	case first:
		m.in.start(p.seq)
		m.roster.load(now)
		m.out.newRelay()
	case restarted:
		m.in.start(p.seq)
		// The members of the old relay are taken to be back: the new one
		// does not announce those who come back within the expiry span.
		// Then the list is loaded, and who has not come back has left.
		m.roster.carry()
		m.roster.loadAt(now.Add(p.expiry))
		m.out.newRelay()
	}
	if p.session != m.session {
		// A new session takes the outbox from its first chat on; only
		// delivers of this session confirm our chats.
		m.in.ackFrom = p.seq
		m.out.newSession(now)
	}
	if !first {
		m.stats.Rejoins++
		m.cfg.logger.Info("udpchat rejoined", "name", m.name, "restarted", restarted)
		text := "same relay"
		if restarted {
			text = "new relay"
		}
		m.notify(KindRejoined, "", text, now)
	}
	m.inc, m.session, m.out.inc = p.id, p.session, p.id
	m.heartbeat, m.expiry, m.maxDatagram, m.out.history = p.heartbeat, p.expiry, p.maxDatagram, p.history
	m.in.forget = uint64(4 * p.history)
	m.state, m.rejoinSince = stateJoined, time.Time{}
	m.lastHeard, m.lastBeat = now, time.Time{} // beat at once: its answer says what we missed
	m.groupSrc = netip.AddrPort{}
	if p.groupSrc.IsValid() {
		m.groupSrc = netip.AddrPortFrom(p.groupSrc, m.relay.Port())
	}
	if p.group != m.group {
		if err := m.listenGroup(p.group); err != nil {
			m.fail(fmt.Errorf("udpchat: listening for the relay's broadcast at %s: %w", p.group, err))
			return
		}
	}
	m.advance(now)
	signal(m.kick)
}

// relayError handles a refusal from the relay.
func (m *memberSession) relayError(p *packet, now time.Time) {
	if m.state == stateJoining && p.ref == m.nonce {
		var err error
		switch p.code {
		case codeNameTaken:
			err = ErrNameTaken
		case codeFull:
			err = fmt.Errorf("%w: member limit", ErrRelayFull)
		case codeRoomsFull:
			err = fmt.Errorf("%w: room limit, and room %q is not open", ErrRelayFull, m.cfg.room)
		case codeRoomFull:
			err = fmt.Errorf("%w: room %q has its limit of members", ErrRelayFull, m.cfg.room)
		case codeBadName:
			err = ErrInvalidName
		default:
			m.stats.Dropped++
			return
		}
		// On a rejoin the name may still be held by our own expired
		// session for a while; keep trying for two expiry spans.
		if !m.rejoinSince.IsZero() && !errors.Is(err, ErrInvalidName) && now.Sub(m.rejoinSince) < 2*m.expiry {
			return
		}
		m.fail(fmt.Errorf("%w: joining as %q", err, m.name))
		return
	}
	if m.state != stateJoined || p.id != m.inc {
		return
	}
	var err error
	switch p.code {
	case codeTooLarge:
		err = ErrMessageTooLarge
	case codeInvalidText:
		err = ErrInvalidText
	case codeNoSuchMember:
		err = ErrNoSuchMember
	default:
		err = fmt.Errorf("udpchat: relay refused the message (code %d)", p.code)
	}
	m.out.refuse(p.ref, err)
}

// fail ends the member for good: the group refused it.
func (m *memberSession) fail(err error) {
	m.state, m.failErr = stateFailed, err
	m.out.closeAll(err)
	close(m.failed)
	m.cfg.logger.Warn("udpchat member failed", "name", m.name, "err", err)
}

// rejoin starts joining again after losing the relay. Pending chats stay
// and are resent once the relay welcomes us.
func (m *memberSession) rejoin(now time.Time, why string) {
	m.cfg.logger.Info("udpchat rejoining", "name", m.name, "why", why)
	if m.state == stateJoined {
		m.notify(KindLost, "", why, now)
	}
	m.state = stateJoining
	m.nonce, m.cookie = randomID(), [cookieLen]byte{}
	m.joinNext, m.joinBackoff, m.rejoinSince = now, joinRetryMin, now
	signal(m.kick)
}
