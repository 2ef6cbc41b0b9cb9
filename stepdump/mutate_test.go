package stepdump_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stepkit/stepkit/stepdump"
)

// TestMutatedCaptures decodes many damaged copies of the fixtures (bytes
// changed, lengths rewritten, ranges cut out): none may panic, and each
// run must finish.
func TestMutatedCaptures(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, name := range []string{"basic.pcap", "pcapng.pcapng", "charcount.pcap"} {
		b, _ := os.ReadFile(filepath.Join(capturesDir, name))
		for i := 0; i < 150; i++ {
			c, desc := damage(rng, b, 4, 1<<20)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = stepdump.Decode(context.Background(), bytes.NewReader(c), stepdump.Options{AnyPort: i%2 == 0}, &recorder{})
			}()
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("%s mutation %d (%s): decoding does not finish", name, i, desc)
			}
		}
	}
}

// damage returns a copy of b with 1 to most changes, each a byte or a
// 32-bit value rewritten (little-endian ones below maxLen, like a length)
// or up to 64 bytes cut out, and one "x" a change.
func damage(rng *rand.Rand, b []byte, most, maxLen int) ([]byte, string) {
	c := append([]byte(nil), b...)
	desc := ""
	for k := 0; k < 1+rng.Intn(most); k++ {
		at := rng.Intn(len(c) - 8)
		switch rng.Intn(4) {
		case 0:
			c[at] = byte(rng.Intn(256))
		case 1:
			binary.BigEndian.PutUint32(c[at:], rng.Uint32())
		case 2:
			binary.LittleEndian.PutUint32(c[at:], uint32(rng.Intn(maxLen)))
		case 3:
			if n := at + rng.Intn(64); n < len(c) {
				c = append(c[:at], c[n:]...)
			}
		}
		desc += "x"
	}
	return c, desc
}
