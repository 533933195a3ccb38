package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	c, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	switch c.sub {
	case "help":
		fmt.Print(helpText)
		return
	case "version":
		fmt.Println("qvisor 0.6.0 (Magnetar stand-in)")
		return
	case "boot":
		err = boot(c)
	case "sandbox":
		err = launch(c)
	}
	if err != nil {
		var ue *usageError
		if !errors.As(err, &ue) {
			err = fmt.Errorf("quark (stand-in): %w", err)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
