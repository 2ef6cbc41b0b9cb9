// Command prog is the untrusted program of the sandbox tests: one binary
// that listens, dials, writes, allocates, spins or forks as told.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: prog mode args...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "echo-server": // listen on args[0], say so, echo one connection
		ln, err := net.Listen("tcp", args[0])
		if err != nil {
			fail(err.Error())
		}
		fmt.Println("listening")
		c, err := ln.Accept()
		if err != nil {
			fail(err.Error())
		}
		io.Copy(c, c)
		c.Close()
	case "bind": // listen on args[0], say so, hold it until stdin closes
		ln, err := net.Listen("tcp", args[0])
		if err != nil {
			fail(err.Error())
		}
		fmt.Println("listening")
		io.Copy(io.Discard, os.Stdin)
		ln.Close()
	case "dial": // dial args[0], send args[1], print the line that comes back
		c, err := net.DialTimeout("tcp", args[0], 10*time.Second)
		if err != nil {
			fail(err.Error())
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintln(c, args[1])
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fail(err.Error())
		}
		fmt.Print(line)
	case "write": // try to create each file; print one line per file
		for _, p := range args {
			err := os.WriteFile(p, []byte("x"), 0o644)
			if err != nil {
				fmt.Printf("%s: denied\n", p)
			} else {
				fmt.Printf("%s: written\n", p)
			}
		}
	case "alloc": // allocate and touch args[0] MiB, 64 MiB at a time
		n, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < n; i += 64 {
			b := make([]byte, 64<<20)
			for j := range b {
				if j%4096 == 0 {
					b[j] = 1
				}
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep)*64, "MiB")
	case "spin": // burn CPU for ever
		x := 0
		for {
			x++
		}
	case "fork", "fork-and-sleep": // start a daemon (own session) that sleeps, say so, wait for stdin or an hour
		cmd := exec.Command(os.Args[0], "sleep", args[0])
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fail(err.Error())
		}
		fmt.Println("forked")
		if os.Args[1] == "fork-and-sleep" {
			time.Sleep(time.Hour)
		}
		io.Copy(io.Discard, os.Stdin)
	case "sleep": // args[0] only marks the process
		time.Sleep(time.Hour)
	case "id":
		fmt.Println(os.Getuid(), os.Getgid())
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "prog:", msg)
	os.Exit(1)
}
