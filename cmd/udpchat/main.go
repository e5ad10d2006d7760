// Command udpchat runs a udpchat relay, chats in a group, and makes group
// keys:
//
//	udpchat relay [flags]            run a relay until SIGINT or SIGTERM
//	udpchat chat -name NAME [flags]  join a group and chat
//	udpchat keygen [-o FILE]         make a new group key
//
// Run "udpchat help" or "udpchat COMMAND -h" for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `udpchat: group chat over UDP

Usage:
  udpchat relay [flags]            run a relay until SIGINT or SIGTERM
  udpchat chat -name NAME [flags]  join a group and chat (-host: run the relay too)
  udpchat keygen [-o FILE]         write a new random group key
  udpchat help [COMMAND]           show this, or a command's flags

A group key is read from the file named by -key-file, or else from the
environment variable UDPCHAT_KEY: 16, 24 or 32 bytes written in hex or
base64; "udpchat keygen" writes one. It is never given as a flag's value.
`

// commands maps each subcommand to its function. A function gets its
// arguments and returns an error to print, or errUsage after its FlagSet has
// complained.
var commands = map[string]func(ctx context.Context, args []string) error{
	"relay":  runRelay,
	"chat":   runChat,
	"keygen": runKeygen,
}

// errUsage says that the flag package has already told the user.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 0 && commands[args[0]] != nil {
			commands[args[0]](context.Background(), []string{"-h"})
			return 0
		}
		fmt.Fprint(os.Stdout, usage)
		return 0
	}
	cmd := commands[name]
	if cmd == nil {
		fmt.Fprintf(os.Stderr, "udpchat: unknown command %q\n\n%s", name, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cmd(ctx, args)
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintln(os.Stderr, errText(err))
	return 1
}

// errText returns err's message with one "udpchat: " prefix: the library's
// errors carry it already.
func errText(err error) string {
	// Some of the library's errors wrap others of its own, so the prefix
	// can recur inside: "udpchat: join as "bob": udpchat: name taken".
	s := strings.ReplaceAll(err.Error(), ": udpchat: ", ": ")
	if strings.HasPrefix(s, "udpchat: ") {
		return s
	}
	return "udpchat: " + s
}

// newFlagSet returns a FlagSet for a subcommand that prints its usage to
// stderr (stdout for -h) and returns errors instead of exiting.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("udpchat "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: udpchat %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs, sending -h's usage to stdout. It returns
// flag.ErrHelp for -h and errUsage for other mistakes, which fs has printed.
func parse(fs *flag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(os.Stdout)
			break
		}
		if a == "--" {
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "udpchat %s: unexpected argument %q\n", strings.TrimPrefix(fs.Name(), "udpchat "), fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// isSet reports whether the flag called name was given.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
