package refserver_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// usable checks that the connection still answers a request properly.
func usable(t *testing.T, c *client) {
	t.Helper()
	c.tb = t
	resp := c.do(req(spec.OpLogin, spec.TypeAuth, "username", "u", "password", md5hex([]byte("u"))))
	wantStatus(t, resp, 200)
}

// closed checks that the server closed the connection without another
// response.
func closed(t *testing.T, c *client) {
	t.Helper()
	m, err := c.recvErr()
	if err == nil {
		t.Fatalf("got %s, want the connection closed", m.JSONString())
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("got %v, want the connection closed", err)
	}
}

func TestMalformedFramesKeepTheConnection(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	for _, tc := range []struct {
		name string
		json []byte
		bin  []byte
	}{
		{"not JSON", []byte("{not json"), nil},
		{"JSON array", []byte(`["operation","LOGIN"]`), nil},
		{"JSON string", []byte(`"hello"`), nil},
		{"empty JSON", nil, nil},
		{"invalid UTF-8", []byte("{\"operation\":\"\xff\xfe\"}"), nil},
		{"trailing data", []byte(`{"operation":"GET"} {}`), nil},
		{"not JSON with binary", []byte("<<>>"), []byte("some binary")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.tb = t
			c.sendRaw(spec.RawFrame(tc.json, tc.bin))
			resp := c.recv()
			wantStatus(t, resp, 400)
			wantOpType(t, resp, spec.OpError, spec.TypeError)
			usable(t, c)
		})
	}
}

func TestOversizedFramesAreRefusedBeforeReading(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{Limits: spec.Limits{MaxJSON: 4096, MaxBinary: 1 << 16}})
	for _, tc := range []struct {
		name      string
		jlen, bin uint32
	}{
		{"JSON of 4 GiB", 0xFFFFFFFF, 0},
		{"JSON over the limit", 4097, 0},
		{"binary of 4 GiB", 20, 0xFFFFFFFF},
		{"binary over the limit", 20, 1<<16 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			// Only the header is sent: the server must answer without
			// waiting for (or allocating) the announced body.
			c.sendRaw(spec.Header(tc.jlen, tc.bin))
			resp := c.recv()
			wantStatus(t, resp, 413)
			wantOpType(t, resp, spec.OpError, spec.TypeError)
			closed(t, c)
			usable(t, dial(t, addr))
		})
	}
}

func TestTruncatedFrameClosesSilently(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	for _, partial := range [][]byte{
		{0, 0},                                  // half a header
		append(spec.Header(50, 0), `{"oper`...), // half a JSON part
		append(spec.Header(2, 100), `{}abc`...), // half a binary part
	} {
		c := dial(t, addr)
		c.sendRaw(partial)
		c.nc.(interface{ CloseWrite() error }).CloseWrite()
		closed(t, c)
	}
	usable(t, dial(t, addr))
}

func TestFrameSplitAndCoalesced(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	login, _ := spec.EncodeFrame(req(spec.OpLogin, spec.TypeAuth, "username", "s", "password", md5hex([]byte("s"))))
	// One byte at a time, the header split in two.
	for i := range login {
		c.sendRaw(login[i : i+1])
		if i%13 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wantStatus(t, c.recv(), 200)
	// Three frames in one write.
	earth, _ := spec.EncodeFrame(req(spec.OpGet, spec.TypeData, "direction", "EARTH"))
	c.sendRaw(bytes.Join([][]byte{login, earth, login}, nil))
	wantStatus(t, c.recv(), 200)
	wantStatus(t, c.recv(), 333)
	wantStatus(t, c.recv(), 200)
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{BlockSize: 100})
	c := dial(t, addr)
	c.login("pipe")
	data := pattern(100*50+7, 3)
	var batch []byte
	add := func(m *spec.Message) {
		b, _ := spec.EncodeFrame(m)
		batch = append(batch, b...)
	}
	add(c.authed(spec.OpSave, spec.TypeFile, "key", "p", "size", len(data)))
	for i := 0; i < 51; i++ {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "p", "block_index", i)
		m.Binary = data[i*100 : min(i*100+100, len(data))]
		add(m)
	}
	for i := 0; i < 51; i++ {
		add(c.authed(spec.OpDownload, spec.TypeFile, "key", "p", "block_index", i))
	}
	c.sendRaw(batch)
	wantStatus(t, c.recv(), 200)
	for i := 0; i < 51; i++ {
		r := c.recv()
		wantStatus(t, r, 200)
		if n, _ := r.BlockIndex(); n != int64(i) {
			t.Fatalf("UPLOAD answer %d has block_index %d", i, n)
		}
		if i == 50 {
			if s, _ := r.MD5(); s != md5hex(data) {
				t.Fatalf("md5 %s", s)
			}
		}
	}
	var got []byte
	for i := 0; i < 51; i++ {
		r := c.recv()
		wantStatus(t, r, 200)
		got = append(got, r.Binary...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("pipelined download differs")
	}
}

// A frame whose JSON length counts characters (the course server's bug) is
// served as the request it meant.
func TestCharacterCountLengthIsRecovered(t *testing.T) {
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("chars")
	js := []byte(`{"operation":"SAVE","direction":"REQUEST","type":"DATA","token":"` + c.token + `","key":"文件","v":"ü"}`)
	chars := len([]rune(string(js)))
	frame := make([]byte, 8)
	binary.BigEndian.PutUint32(frame[0:4], uint32(chars))
	frame = append(frame, js...)
	c.sendRaw(frame)
	resp := c.recv()
	wantStatus(t, resp, 200)
	if k, _ := resp.Key(); k != "文件" {
		t.Fatalf("key %q", k)
	}
	resp = c.do(c.authed(spec.OpGet, spec.TypeData, "key", "文件"))
	wantStatus(t, resp, 200)
	if v, _ := resp.String("v"); v != "ü" {
		t.Fatalf("v = %q", v)
	}
}

func TestEveryRequestIsAnsweredOnce(t *testing.T) {
	// The requests the course server leaves unanswered, sent back to back:
	// each must get exactly one response, in order.
	addr, _ := refserver.StartTest(t, refserver.Config{})
	c := dial(t, addr)
	c.login("once")
	reqs := []*spec.Message{
		c.authed(spec.OpGet, spec.TypeAuth),
		c.authed(spec.OpUpload, spec.TypeData, "key", "k"),
		c.authed(spec.OpDownload, spec.TypeData, "key", "k"),
		c.authed(spec.OpSave, spec.TypeFile, "key", "z", "size", 0),
		c.authed(spec.OpGet, spec.TypeFile),
		req(spec.OpGet, spec.TypeFile, "token", "not base64!", "key", "k"),
		c.authed(spec.OpUpload, spec.TypeFile, "key", "z", "block_index", "0"),
		c.authed(spec.OpSave, spec.TypeFile, "key", "neg", "size", -5),
		c.authed(spec.OpSave, spec.TypeFile, "key", "str", "size", "5"),
		c.authed(spec.OpGet, spec.TypeFile, "key", 12),
		c.authed(spec.OpDownload, spec.TypeFile, "key", "z", "block_index", json.RawMessage("1.0")),
		c.authed(spec.OpSave, spec.TypeData, "key", nil),
	}
	want := []int{409, 408, 408, 200, 410, 403, 408, 410, 410, 410, 410, 410}
	for _, m := range reqs {
		c.send(m)
	}
	for i, w := range want {
		r := c.recv()
		wantStatus(t, r, w)
		if r.Operation() != reqs[i].Operation() {
			t.Errorf("answer %d: operation %s, want %s echoed", i, r.Operation(), reqs[i].Operation())
		}
	}
	usable(t, c)
}
