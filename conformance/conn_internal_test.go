package conformance

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestConn6Address: CONN-6 is judged only for a run against port 1379, and
// over IPv4; the dial itself is exercised by a run against such a server.
func TestConn6Address(t *testing.T) {
	tests := []struct {
		target, addr string
		judged       bool
	}{
		{"127.0.0.1:1379", "127.0.0.1:1379", true},
		{"10.0.0.7:1379", "10.0.0.7:1379", true},
		{"step.example:1379", "step.example:1379", true},
		{"[::1]:1379", "127.0.0.1:1379", true},
		{"[2001:db8::7]:1379", "", false},
		{"[fe80::1%eth0]:1379", "", false},
		{"127.0.0.1:40123", "", false},
		{"step.example:2000", "", false},
		{"no-port", "", false},
	}
	for _, tt := range tests {
		addr, skip := conn6Address(tt.target)
		if (skip == "") != tt.judged || addr != tt.addr {
			t.Errorf("conn6Address(%q) = %q, %q; want %q, judged %v", tt.target, addr, skip, tt.addr, tt.judged)
		}
	}
}

// TestConnectOutlastsAFullBacklog: a server whose listen backlog is full
// drops new SYNs until it accepts again; the connect gets in on TCP's
// retry even when that comes after the read timeout.
func TestConnectOutlastsAFullBacklog(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one connection not yet accepted
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "listener")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	first, err := net.DialTimeout("tcp", addr, 2*time.Second) // fills the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		c, err := dialConn(context.Background(), addr, 1, 200*time.Millisecond, &wireLog{start: start})
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(1500 * time.Millisecond) // the first SYN, and its retry at 1 s, are dropped
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("connect with a read timeout of 200ms to a server whose backlog drains after 1.5s: %v", err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("connected after %v: the backlog was not full, the test shows nothing", took)
	}
}
