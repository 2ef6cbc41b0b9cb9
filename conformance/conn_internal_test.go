package conformance

import "testing"

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
