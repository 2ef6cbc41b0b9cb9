package sandbox

import (
	"context"
	"io"
	"net"
	"os/exec"
	"testing"
)

// BenchmarkNewClose is the cost of one sandbox (namespaces, scratch copy
// of the test program, cgroups) made and closed; BenchmarkExecTrue, one
// fork and exec, is its yardstick.
func BenchmarkNewClose(b *testing.B) {
	if ok, why := Available(); !ok {
		b.Skip(why)
	}
	ctx := context.Background()
	for b.Loop() {
		s, err := New(ctx, Config{Dir: progDir})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommandTrue is the cost of one untrusted command that does
// nothing (the chain that isolates it); BenchmarkExecTrue is its yardstick.
func BenchmarkCommandTrue(b *testing.B) {
	if ok, why := Available(); !ok {
		b.Skip(why)
	}
	s, err := New(context.Background(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if err := s.Command(context.Background(), []string{"true"}).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExecTrue(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoopbackInside copies through a TCP connection made with
// Listen and DialContext inside a sandbox; BenchmarkLoopbackHost, the
// same on the host's loopback, is its yardstick.
func BenchmarkLoopbackInside(b *testing.B) {
	if ok, why := Available(); !ok {
		b.Skip(why)
	}
	s, err := New(context.Background(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchCopy(b, func(addr string) (net.Listener, error) {
		return s.Listen(context.Background(), "tcp", addr)
	}, func(addr string) (net.Conn, error) {
		return s.DialContext(context.Background(), "tcp", addr)
	})
}

func BenchmarkLoopbackHost(b *testing.B) {
	benchCopy(b, func(addr string) (net.Listener, error) {
		return net.Listen("tcp", addr)
	}, func(addr string) (net.Conn, error) {
		return net.Dial("tcp", addr)
	})
}

func benchCopy(b *testing.B, listen func(string) (net.Listener, error), dial func(string) (net.Conn, error)) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := dial(ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	if n := <-done; n != int64(b.N)*int64(len(buf)) {
		b.Fatalf("received %d bytes, sent %d", n, b.N*len(buf))
	}
}
