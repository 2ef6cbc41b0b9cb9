package spec

import (
	"bytes"
	"crypto/md5"
	"io"
	"net"
	"testing"
)

// loopReader replays one byte sequence forever, so a Reader can be
// benchmarked without the cost of refilling a source.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.off:])
		n += c
		l.off = (l.off + c) % len(l.data)
	}
	return n, nil
}

func benchControl() *Message {
	return NewRequest(OpUpload, TypeFile).
		Set(FieldToken, "MjM2MjIwMi4yMDI1MTExMjE5MzMwNi5sb2dpbi4zYjQ1ZmQ5ZDU3YzQzZWI3MzI5YzI3OGU1ZDAyYTM4Yg==").
		Set(FieldKey, "report.pdf").Set(FieldBlockIndex, 3)
}

func benchBlock() *Message {
	m := benchControl()
	m.Binary = bytes.Repeat([]byte{0x5a}, DefaultBlockSize)
	return m
}

func benchRead(b *testing.B, m *Message) {
	frame, err := EncodeFrame(m)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReader(&loopReader{data: frame}, Limits{})
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchReadFrame(b *testing.B, m *Message) {
	frame, err := EncodeFrame(m)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReader(&loopReader{data: frame}, Limits{})
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchWrite(b *testing.B, m *Message) {
	w := NewWriter(io.Discard)
	frame, _ := EncodeFrame(m)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadMessageControl(b *testing.B)  { benchRead(b, benchControl()) }
func BenchmarkReadMessageBlock(b *testing.B)    { benchRead(b, benchBlock()) }
func BenchmarkReadFrameControl(b *testing.B)    { benchReadFrame(b, benchControl()) }
func BenchmarkReadFrameBlock(b *testing.B)      { benchReadFrame(b, benchBlock()) }
func BenchmarkWriteMessageControl(b *testing.B) { benchWrite(b, benchControl()) }
func BenchmarkWriteMessageBlock(b *testing.B)   { benchWrite(b, benchBlock()) }

// BenchmarkParseMessage isolates the JSON object parser.
func BenchmarkParseMessage(b *testing.B) {
	text := benchControl().AppendJSON(nil)
	m := NewMessage()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if err := m.parseObject(text); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineCopyBlock is the floor a block frame cannot beat: copying
// the same bytes out of the same source with no parsing at all.
func BenchmarkBaselineCopyBlock(b *testing.B) {
	frame, _ := EncodeFrame(benchBlock())
	src := &loopReader{data: frame}
	buf := make([]byte, len(frame))
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.ReadFull(src, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineMD5Block is the other limit of every upload: the server
// hashes each byte it stores once.
func BenchmarkBaselineMD5Block(b *testing.B) {
	block := benchBlock().Binary
	h := md5.New()
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	for b.Loop() {
		h.Write(block)
	}
}

// BenchmarkParseMessageTokens is the same parse through encoding/json's
// Decoder.Token, for comparison.
func BenchmarkParseMessageTokens(b *testing.B) {
	text := benchControl().AppendJSON(nil)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := tokenParse(text); err != nil {
			b.Fatal(err)
		}
	}
}

// loopbackPair returns both ends of a TCP connection on 127.0.0.1.
func loopbackPair(b *testing.B) (client, server net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// BenchmarkLoopbackBlockFrames sends block frames through loopback TCP with
// a Writer and reads them with a Reader on the other side; compare with
// BenchmarkLoopbackRawCopy, the same bytes with no framing at all.
func BenchmarkLoopbackBlockFrames(b *testing.B) {
	client, server := loopbackPair(b)
	m := benchBlock()
	frame, _ := EncodeFrame(m)
	done := make(chan error, 1)
	go func() {
		r := NewReader(server, Limits{})
		for {
			if _, err := r.ReadMessage(); err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- err
				return
			}
		}
	}()
	w := NewWriter(client)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
	client.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

func BenchmarkLoopbackRawCopy(b *testing.B) {
	client, server := loopbackPair(b)
	frame, _ := EncodeFrame(benchBlock())
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, server)
		done <- err
	}()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	client.(*net.TCPConn).CloseWrite()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
