package udpchat_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/udpchat/udpchat"
)

// A relay and two members on loopback: bob hears alice.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	relay, err := udpchat.NewRelay(udpchat.WithAddr("127.0.0.1:0")) // port 0: any free port
	if err != nil {
		log.Fatal(err)
	}
	defer relay.Close()
	go relay.Serve(ctx)

	at := udpchat.WithAddr(relay.Addr().String())
	alice, err := udpchat.Join(ctx, "alice", at)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := udpchat.Join(ctx, "bob", at)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	if err := alice.Send(ctx, "hello, bob"); err != nil {
		log.Fatal(err)
	}
	for range 2 {
		msg, err := bob.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %v %s %q\n", msg.Seq, msg.Kind, msg.From, msg.Text)
	}
	fmt.Println(len(relay.Members()), "members")
	// Output:
	// 2 join bob ""
	// 3 chat alice "hello, bob"
	// 2 members
}

// Receive in a loop: chats, presence, news of the member's own link and
// lost messages, each in its place. The loop ends when the member closes.
func ExampleMember_Receive() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := udpchat.NewRelay(udpchat.WithAddr("127.0.0.1:0"))
	if err != nil {
		log.Fatal(err)
	}
	defer relay.Close()
	go relay.Serve(ctx)
	at := udpchat.WithAddr(relay.Addr().String())
	carol, err := udpchat.Join(ctx, "carol", at)
	if err != nil {
		log.Fatal(err)
	}
	dave, err := udpchat.Join(ctx, "dave", at)
	if err != nil {
		log.Fatal(err)
	}
	dave.Send(ctx, "hi carol")
	dave.Close()

	for {
		msg, err := carol.Receive(ctx)
		var gap *udpchat.GapError
		switch {
		case errors.As(err, &gap):
			fmt.Printf("* lost messages %d to %d\n", gap.First, gap.Last)
			continue
		case err != nil:
			fmt.Println(err)
			return
		}
		switch msg.Kind {
		case udpchat.KindChat:
			fmt.Printf("%s: %s\n", msg.From, msg.Text)
		case udpchat.KindJoin:
			fmt.Printf("* %s joined\n", msg.From)
		case udpchat.KindLeave:
			fmt.Printf("* %s left\n", msg.From)
			carol.Close() // Receive returns ErrClosed from now on
		case udpchat.KindLost:
			fmt.Printf("* relay lost: %s\n", msg.Text)
		case udpchat.KindRejoined:
			fmt.Printf("* back (%s)\n", msg.Text)
		}
	}
	// Output:
	// * carol joined
	// * dave joined
	// dave: hi carol
	// * dave left
	// udpchat: closed
}

// The relay of a server program: serve until the context ends, then Close
// to tell the members.
func ExampleRelay_Serve() {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	relay, err := udpchat.NewRelay(udpchat.WithAddr("127.0.0.1:0"), udpchat.WithHeartbeat(500*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	err = relay.Serve(ctx)
	fmt.Println(err)
	fmt.Println(relay.Close())
	// Output:
	// context deadline exceeded
	// <nil>
}

// Rooms and a private message: alice and bob talk in "ops", where bob
// whispers to alice; carol, in the main room, hears none of it.
func ExampleMember_SendTo() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	relay, err := udpchat.NewRelay(udpchat.WithAddr("127.0.0.1:0"))
	if err != nil {
		log.Fatal(err)
	}
	defer relay.Close()
	go relay.Serve(ctx)
	at := udpchat.WithAddr(relay.Addr().String())
	ops := udpchat.WithRoom("ops")
	alice, err := udpchat.Join(ctx, "alice", at, ops)
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := udpchat.Join(ctx, "bob", at, ops)
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()
	carol, err := udpchat.Join(ctx, "carol", at) // the main room
	if err != nil {
		log.Fatal(err)
	}
	defer carol.Close()

	if err := bob.SendTo(ctx, "alice", "psst"); err != nil {
		log.Fatal(err)
	}
	err = bob.SendTo(ctx, "carol", "hi") // carol is in another room
	fmt.Println(errors.Is(err, udpchat.ErrNoSuchMember))
	for range 3 {
		msg, err := alice.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %v %s>%s %q\n", msg.Seq, msg.Kind, msg.From, msg.To, msg.Text)
	}
	fmt.Println(relay.Rooms())
	// Output:
	// true
	// 1 join alice> ""
	// 2 join bob> ""
	// 3 private bob>alice "psst"
	// [{ 1} {ops 2}]
}

// Rooms spread over several relays: every program that lists the relays
// the same way picks the same one for a room.
func ExampleRelayFor() {
	relays := []string{"10.0.0.1:2410", "10.0.0.2:2410", "10.0.0.3:2410"}
	fmt.Println(udpchat.RelayFor("ops", relays))
	fmt.Println(udpchat.RelayFor("ops", []string{relays[2], relays[0], relays[1]}))
	// Output:
	// 10.0.0.1:2410
	// 10.0.0.1:2410
}
