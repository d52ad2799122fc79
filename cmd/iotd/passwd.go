package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"iotd/auth"
)

// passwdCommand is `iotd passwd FILE USER`: mosquitto_passwd's job, writing
// the same $7$ (PBKDF2-SHA512) hashes, so the file works with iotd and
// Mosquitto alike.
func passwdCommand() *cli.Command {
	return &cli.Command{
		Name:      "passwd",
		Usage:     "add a user to a password file, or change its password",
		ArgsUsage: "FILE USER",
		Description: "Sets USER's password in FILE (created, mode 0600, if missing), hashed with PBKDF2-SHA512 ($7$)\n" +
			"as Mosquitto 2's mosquitto_passwd does. Other lines are kept as they are. The password is asked\n" +
			"for twice on the terminal, without echo, or read from standard input with --password-stdin.\n" +
			"A running iotd reads the file again on SIGHUP.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "password-stdin", Usage: "read the password from the first line of standard input instead of prompting"},
		},
		Action: runPasswd,
	}
}

func runPasswd(cctx *cli.Context) error {
	if cctx.NArg() != 2 {
		return cli.Exit("usage: iotd passwd [--password-stdin] FILE USER", 2)
	}
	file, user := cctx.Args().Get(0), cctx.Args().Get(1)
	if err := auth.ValidUsername(user); err != nil {
		return cli.Exit(fmt.Sprintf("user %q: %v", user, err), 2)
	}
	var pw []byte
	var err error
	if cctx.Bool("password-stdin") {
		pw, err = readPasswordLine(os.Stdin)
	} else {
		pw, err = promptPassword(int(os.Stdin.Fd()))
	}
	if err != nil {
		return cli.Exit(err.Error(), 1)
	}
	if err := auth.SetPassword(file, user, pw); err != nil {
		return cli.Exit(err.Error(), 1)
	}
	fmt.Fprintf(os.Stderr, "set the password of %s in %s; send SIGHUP to a running iotd to use it\n", user, file)
	return nil
}

// readPasswordLine reads the first line of r, without its line ending.
func readPasswordLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 1<<16)).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the password from standard input: %w", err)
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) == 0 {
		return nil, errors.New("empty password on standard input")
	}
	return line, nil
}

// promptPassword asks twice on the terminal without echo.
func promptPassword(fd int) ([]byte, error) {
	if !term.IsTerminal(fd) {
		return nil, errors.New("standard input is not a terminal: pipe the password in with --password-stdin")
	}
	fmt.Fprint(os.Stderr, "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	fmt.Fprint(os.Stderr, "Reenter password: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, fmt.Errorf("read the password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords do not match")
	}
	return pw, nil
}
