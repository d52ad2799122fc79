// Command iotd is an MQTT 3.1.1 broker.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is stamped by `make build` / `make release`.
var version = "dev"

func main() {
	app := newApp()
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "iotd:", err)
		if ec, ok := err.(cli.ExitCoder); ok {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

func newApp() *cli.App {
	serve := serveCommand()
	return &cli.App{
		Name:    "iotd",
		Usage:   "a sharded MQTT 3.1.1 broker",
		Version: version,
		Description: "With no command, iotd runs the broker (the same as `iotd serve`).\n" +
			"By default it listens on tcp://127.0.0.1:1883 and keeps its state in ./data.",
		Flags:    serve.Flags,
		Action:   serve.Action,
		Commands: []*cli.Command{serve, loadtestCommand(), passwdCommand(), netfuzzCommand()},
	}
}
