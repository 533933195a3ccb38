// Command guest is the WASI preview1 test module of the wasm e2e tests and
// benchmark (GOOS=wasip1 GOARCH=wasm go build ./hack/wasm/guest). Its
// first argument picks what it does:
//
//	hello               "hello from wasm" on stdout, "hello on stderr" on stderr
//	args                every argument and the environment, one per line
//	cat FILE...         print files (relative paths resolve against PWD)
//	write FILE TEXT     write TEXT to FILE, then print it back
//	ls DIR              list a directory
//	exit N              exit with N (os.Exit: proc_exit)
//	sleep DURATION      print "sleeping", sleep (poll_oneoff), print "woke"
//	idle                print "ready", then sleep forever
//	tick [FILE TEXT]... write each FILE with TEXT, then print "tick N" once a
//	                    second forever (N from 0)
//	rm FILE             remove FILE
//	spin                print "spinning", then burn CPU forever
//	stdin               copy stdin to stdout, then print "stdin: EOF"
//	grow MIB            allocate and touch MIB MiB, print "grew"
//	escape              try to read files outside the rootfs; print what it got
//	find NAME [PATH]... print every file named NAME below / and every PATH
//	                    that exists ("sees PATH"), then "searched N entries"
//
// The module uses only the standard library.
package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("hello from wasm")
		return
	}
	arg := os.Args[2:]
	switch os.Args[1] {
	case "hello":
		fmt.Println("hello from wasm")
		fmt.Fprintln(os.Stderr, "hello on stderr")
	case "args":
		for i, a := range os.Args {
			fmt.Printf("arg[%d]=%s\n", i, a)
		}
		env := os.Environ()
		sort.Strings(env)
		for _, e := range env {
			fmt.Printf("env %s\n", e)
		}
		wd, err := os.Getwd()
		fmt.Printf("cwd %s %v\n", wd, err)
	case "cat":
		for _, f := range arg {
			data, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintf(os.Stderr, "cat %s: %v\n", f, err)
				os.Exit(1)
			}
			os.Stdout.Write(data)
		}
	case "write":
		if len(arg) != 2 {
			fail("usage: write FILE TEXT")
		}
		if err := os.WriteFile(arg[0], []byte(arg[1]+"\n"), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write %s: %v\n", arg[0], err)
			os.Exit(1)
		}
		data, err := os.ReadFile(arg[0])
		if err != nil {
			fail(err.Error())
		}
		fmt.Printf("wrote %s: %s", arg[0], data)
	case "ls":
		ents, err := os.ReadDir(arg[0])
		if err != nil {
			fail(err.Error())
		}
		for _, e := range ents {
			fmt.Println(e.Name())
		}
	case "exit":
		n, err := strconv.Atoi(arg[0])
		if err != nil {
			fail(err.Error())
		}
		fmt.Printf("exiting with %d\n", n)
		os.Exit(n)
	case "sleep":
		d, err := time.ParseDuration(arg[0])
		if err != nil {
			fail(err.Error())
		}
		fmt.Println("sleeping")
		time.Sleep(d)
		fmt.Println("woke")
	case "idle":
		fmt.Println("ready")
		for {
			time.Sleep(time.Hour)
		}
	case "tick":
		if len(arg)%2 != 0 {
			fail("usage: tick [FILE TEXT]...")
		}
		for i := 0; i < len(arg); i += 2 {
			if err := os.WriteFile(arg[i], []byte(arg[i+1]+"\n"), 0o644); err != nil {
				fail(err.Error())
			}
		}
		for n := 0; ; n++ {
			fmt.Printf("tick %d\n", n)
			time.Sleep(time.Second)
		}
	case "rm":
		if len(arg) != 1 {
			fail("usage: rm FILE")
		}
		if err := os.Remove(arg[0]); err != nil {
			fail(err.Error())
		}
	case "spin":
		fmt.Println("spinning")
		x := 0
		for {
			x++
		}
	case "stdin":
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Println("stdin:", sc.Text())
		}
		fmt.Println("stdin: EOF")
	case "grow":
		n, err := strconv.Atoi(arg[0])
		if err != nil {
			fail(err.Error())
		}
		var keep [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Printf("grew %d MiB\n", len(keep))
	case "escape":
		for _, p := range []string{"/../../../../etc/hostname", "../../../../proc/self/status"} {
			data, err := os.ReadFile(p)
			fmt.Printf("read %s: %d bytes, err %v\n", p, len(data), err)
		}
	case "find":
		if len(arg) < 1 {
			fail("usage: find NAME [PATH]...")
		}
		n := 0
		err := filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
			n++
			if err == nil && d.Name() == arg[0] {
				fmt.Println(p)
			}
			return nil
		})
		if err != nil {
			fail(err.Error())
		}
		for _, p := range arg[1:] {
			if _, err := os.Stat(p); err == nil {
				fmt.Println("sees", p)
			}
		}
		fmt.Printf("searched %d entries\n", n)
	default:
		fail("unknown mode " + strings.Join(os.Args[1:], " "))
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "guest:", msg)
	os.Exit(2)
}
