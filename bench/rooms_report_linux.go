//go:build linux

package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// rows compares the arrangements, the last against the first (one room),
// and gives the idle room's heap against the target of under 2 KiB.
func (rr *roomsResult) rows() []row {
	if len(rr.Runs) < 2 {
		return nil
	}
	one, many := rr.Runs[0], rr.Runs[len(rr.Runs)-1]
	baseline := fmt.Sprintf("1 room of %d", one.Size)
	mk := func(name string, base, v float64, unit string) row {
		r := row{Case: name, N: many.N, Baseline: baseline, Base: base, Value: v, Unit: unit}
		if base > 0 {
			r.Ratio = v / base
		}
		return r
	}
	name := fmt.Sprintf("rooms %dx%d", many.Rooms, many.Size)
	return []row{
		mk(name+" deliveries", one.Rate, many.Rate, "dgram/s"),
		mk(name+" relay CPU", one.RelayNsPerDlv, many.RelayNsPerDlv, "ns"),
		{Case: "heap per idle room", N: rr.Idle.Rooms, Baseline: "-", Value: rr.Idle.PerRoom, Unit: "B",
			Target: "<2048 B", OK: ptr(rr.Idle.PerRoom < 2048)},
	}
}

// print writes the arrangements, one line each, and the idle rooms.
func (rr *roomsResult) print(w io.Writer) error {
	fmt.Fprintf(w, "\nRooms: udpchat's relay alone, the same members in 1 room and in many rooms of the same size, the same\n"+
		"members speaking (one per room of the many, all of them in the one), each room keeping at most %d chats in\n"+
		"flight (so both hold as many deliveries in flight), in %d turns; GOMAXPROCS=%d here, for the load's two\n"+
		"locked threads. delivered/s: datagrams at the members; lost: deliveries of what the relay sequenced that\n"+
		"never arrived; CPU: seconds per second of the windows, of the drain's thread, the speakers' thread and the\n"+
		"rest (the relay and the Go runtime); relay ns/dlv: the rest per delivery; join heap: the relay's heap\n"+
		"growth over the joins and their join events, per member.\n", speakWindow, roomsRounds, rr.GOMAXPROCS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "arrangement\tmembers\tspeakers\tdelivered/s\tchats/s\tsent\tlost\tdrops\tCPU drain\tspeakers\trelay+rest\trelay ns/dlv\tjoin heap\trelay")
	for _, r := range rr.Runs {
		fmt.Fprintf(tw, "%d x %d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f B\t%s\n",
			r.Rooms, r.Size, r.N, r.Speakers, human(r.Rate), human(r.ChatsPerS), r.Sent, r.Lost, r.Drops,
			r.CPU.Drain, r.CPU.Speakers, r.CPU.Rest, r.RelayNsPerDlv, r.JoinHeapPerMember, relayStats(r.Relay))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rr.Runs) >= 2 {
		one, many := rr.Runs[0], rr.Runs[len(rr.Runs)-1]
		if one.Rate > 0 && one.RelayNsPerDlv > 0 {
			fmt.Fprintf(w, "%d rooms of %d against 1 of %d: %.2fx the deliveries/s, %.2fx the relay's CPU per delivery",
				many.Rooms, many.Size, one.Size, many.Rate/one.Rate, many.RelayNsPerDlv/one.RelayNsPerDlv)
			if perDlv, perChat, ok := costModel(one, many); ok {
				fmt.Fprintf(w, ";\n  as relay CPU = a + b/room size per delivery: a %.0fns per delivery, b %.0fns per chat", perDlv, perChat)
			}
			fmt.Fprintln(w, ".")
		}
	}
	if i := rr.Idle; i.Rooms > 0 {
		fmt.Fprintf(w, "idle rooms: %d rooms of one member joined after one more, relay heap +%d bytes (%.0f B/room).\n",
			i.Rooms, i.HeapDelta, i.PerRoom)
	}
	return nil
}

// costModel splits the relay's CPU per delivery of two arrangements with
// rooms of different sizes into a cost per delivery and a cost per chat
// (received, sequenced, built once): t = perDlv + perChat/size. Whatever
// a room costs apart from its fan-out is in perChat.
func costModel(x, y roomsRun) (perDlv, perChat float64, ok bool) {
	if x.Size == y.Size || x.RelayNsPerDlv <= 0 || y.RelayNsPerDlv <= 0 {
		return 0, 0, false
	}
	perChat = (y.RelayNsPerDlv - x.RelayNsPerDlv) / (1/float64(y.Size) - 1/float64(x.Size))
	return x.RelayNsPerDlv - perChat/float64(x.Size), perChat, true
}

// notes writes the rooms case's notes.
func (rr *roomsResult) notes(w io.Writer) {
	for _, r := range rr.Runs {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "note: %s N=%d: %s\n", r.Case, r.N, n)
		}
	}
	for _, n := range rr.Idle.Notes {
		fmt.Fprintf(w, "note: idle rooms: %s\n", n)
	}
}
