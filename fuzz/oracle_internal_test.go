package fuzz

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
	"testing"

	"github.com/stepkit/stepkit/spec"
)

// exchange builds an answered exchange from a request and a response.
func exchange(step int, req, resp string, tokenOf int, block, respBin []byte) *Exchange {
	ex := &Exchange{Step: step, Sent: req, Outcome: Answered, need: needAnswer, tokenOf: tokenOf, block: block, BinLen: len(block), RespBin: respBin}
	var err error
	if ex.Req, err = spec.ParseMessage([]byte(req)); err != nil {
		panic(err)
	}
	if ex.Resp, err = spec.ParseMessage([]byte(resp)); err != nil {
		panic(err)
	}
	return ex
}

func resp(op, typ string, status int, extra string) string {
	return `{"operation":"` + op + `","direction":"RESPONSE","type":"` + typ + `","status":` + itoa(status) + `,"status_msg":"x"` + extra + `}`
}

func itoa(n int) string { return strconv.Itoa(n) }

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// Each oracle names the requirement an answer breaks, and a correct
// server's answers break none.
func TestJudgeNamesTheRequirement(t *testing.T) {
	block := []byte("0123456789")
	save := `{"operation":"SAVE","direction":"REQUEST","type":"FILE","token":"t","key":"k","size":10}`
	plan := resp("SAVE", "FILE", 200, `,"key":"k","size":10,"total_block":1,"block_size":20480`)
	upload := `{"operation":"UPLOAD","direction":"REQUEST","type":"FILE","token":"t","key":"k","block_index":0}`
	get := `{"operation":"GET","direction":"REQUEST","type":"FILE","token":"t","key":"k"}`
	for _, c := range []struct {
		name    string
		trace   []*Exchange
		want    string // oracle and requirement; "" for none
		wantKey string
	}{
		{"a correct upload", []*Exchange{
			exchange(0, save, plan, 1, nil, nil),
			exchange(1, upload, resp("UPLOAD", "FILE", 200, `,"key":"k","block_index":0,"md5":"`+md5hex(block)+`"`), 1, block, nil),
			exchange(2, get, resp("GET", "FILE", 200, `,"key":"k","size":10,"total_block":1,"block_size":20480,"md5":"`+md5hex(block)+`"`), 1, nil, nil),
		}, "", ""},
		{"a wrong md5", []*Exchange{
			exchange(0, save, plan, 1, nil, nil),
			exchange(1, upload, resp("UPLOAD", "FILE", 200, `,"key":"k","block_index":0,"md5":"00000000000000000000000000000000"`), 1, block, nil),
		}, "data FILE-UPLOAD-2", "data FILE UPLOAD 200"},
		{"200 without a token", []*Exchange{
			exchange(0, `{"operation":"GET","direction":"REQUEST","type":"FILE","key":"k"}`, resp("GET", "FILE", 200, ``), 0, nil, nil),
		}, "status TOKEN-1", "status FILE GET 200"},
		{"a key that escapes", []*Exchange{
			exchange(0, `{"operation":"SAVE","direction":"REQUEST","type":"DATA","token":"t","key":"../k"}`, resp("SAVE", "DATA", 200, `,"key":"../k"`), 1, nil, nil),
		}, "status KEY-2", "status DATA SAVE 200"},
		{"another user's file", []*Exchange{
			exchange(0, save, plan, 1, nil, nil),
			exchange(1, upload, resp("UPLOAD", "FILE", 200, `,"key":"k","block_index":0,"md5":"`+md5hex(block)+`"`), 1, block, nil),
			exchange(2, get, resp("GET", "FILE", 200, `,"key":"k","size":10,"total_block":1,"block_size":20480,"md5":"`+md5hex(block)+`"`), 2, nil, nil),
		}, "isolation ISO-1", "isolation FILE GET 200"},
		{"a block of the wrong length", []*Exchange{
			exchange(0, save, plan, 1, nil, nil),
			exchange(1, upload, resp("UPLOAD", "FILE", 200, `,"key":"k","block_index":0`), 1, block[:5], nil),
		}, "status FILE-UPLOAD-10", "status FILE UPLOAD 200"},
		{"a download that differs", []*Exchange{
			exchange(0, save, plan, 1, nil, nil),
			exchange(1, upload, resp("UPLOAD", "FILE", 200, `,"key":"k","block_index":0,"md5":"`+md5hex(block)+`"`), 1, block, nil),
			exchange(2, `{"operation":"DOWNLOAD","direction":"REQUEST","type":"FILE","token":"t","key":"k","block_index":0}`, resp("DOWNLOAD", "FILE", 200, `,"key":"k","block_index":0,"size":10`), 1, nil, []byte("0123456780")),
		}, "data FILE-DOWNLOAD-1", "data FILE DOWNLOAD 200"},
		{"an answer without status", []*Exchange{
			exchange(0, get, `{"operation":"GET","direction":"RESPONSE","type":"FILE","status_msg":"x"}`, 1, nil, nil),
		}, "response MSG-1", "response FILE GET 0"},
		{"a 404 is a refusal the spec allows for a partial upload's DELETE", []*Exchange{
			exchange(0, save, plan, 1, nil, nil),
			exchange(1, `{"operation":"DELETE","direction":"REQUEST","type":"FILE","token":"t","key":"k"}`, resp("DELETE", "FILE", 404, ``), 1, nil, nil),
		}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := Judge(&Trace{Exchanges: c.trace})
			if c.want == "" {
				if len(vs) > 0 {
					t.Fatalf("violations %+v, want none", vs)
				}
				return
			}
			if len(vs) == 0 {
				t.Fatalf("no violation, want %s", c.want)
			}
			if got := vs[0].Oracle + " " + vs[0].Requirement; got != c.want {
				t.Errorf("got %s (%s), want %s", got, vs[0].Message, c.want)
			}
			if vs[0].Key() != c.wantKey {
				t.Errorf("key %q, want %q", vs[0].Key(), c.wantKey)
			}
		})
	}
	// A request left unanswered, confirmed, is REQ-6.
	ex := &Exchange{Step: 3, Outcome: Silence, need: needAnswer, Req: spec.NewRequest(spec.OpDelete, spec.TypeFile)}
	if vs := Judge(&Trace{Exchanges: []*Exchange{ex}}); len(vs) != 1 || vs[0].Requirement != "REQ-6" || vs[0].Check.Kind != "silence" || vs[0].Check.Step != 3 {
		t.Errorf("silence: %+v", vs)
	}
}
