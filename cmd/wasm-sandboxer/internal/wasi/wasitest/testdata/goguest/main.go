// goguest is the conformance suite's Go guest (GOOS=wasip1 GOARCH=wasm):
// Go's runtime uses poll_oneoff and fd_write its own way (non-blocking
// stdio, a netpoller over poll_oneoff), unlike hand-written WAT.
package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	mode := "hello"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "hello":
		fmt.Println("hello from go")
		fmt.Fprintln(os.Stderr, "hello stderr from go")
	case "env":
		fmt.Printf("args=%q\n", os.Args)
		fmt.Println("GREETING=" + os.Getenv("GREETING"))
		wd, err := os.Getwd()
		fmt.Printf("cwd=%s err=%v\n", wd, err)
		b, err := os.ReadFile("input.txt") // relative to the cwd
		fmt.Printf("relative=%q err=%v\n", strings.TrimSpace(string(b)), err)
		err = os.WriteFile("/out.txt", []byte("written by go\n"), 0o644)
		fmt.Printf("write err=%v\n", err)
		_, err = os.ReadFile("/../../secret.txt")
		fmt.Printf("escape err=%v\n", err != nil)
	case "sleep":
		d, _ := time.ParseDuration(os.Args[2])
		fmt.Println("ready")
		start := time.Now()
		time.Sleep(d)
		fmt.Println("slept", time.Since(start) >= d)
	case "cat":
		fmt.Println("ready")
		io.Copy(os.Stdout, os.Stdin)
	case "oom":
		var keep [][]byte
		for {
			keep = append(keep, make([]byte, 1<<20))
			keep[len(keep)-1][0] = 1
		}
	case "exit":
		c, _ := strconv.Atoi(os.Args[2])
		os.Exit(c)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", mode)
		os.Exit(2)
	}
}
