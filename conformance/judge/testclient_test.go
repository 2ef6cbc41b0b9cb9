package judge

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// asTestClient, set in a process's environment, makes the test binary run
// a STEP upload client written for these tests, in the mode the variable
// names: "good" uploads as a client should; every other mode breaks one
// requirement on purpose.
const asTestClient = "STEPKIT_JUDGE_TEST_CLIENT"

// Test client modes, and the requirement each breaks.
const (
	modeGood        = "good"
	modeOneRecv     = "one-recv"     // one read per response (CLIENT-3, FRAME-4)
	modeFixedBlock  = "fixed-block"  // 20480-byte blocks whatever the plan (CLIENT-1)
	modeCharCount   = "char-count"   // JSON lengths in characters (FRAME-2)
	modeLiar        = "liar"         // ignores statuses and md5, prints success (CLIENT-6, CLIENT-2)
	modeNoTimeout   = "no-timeout"   // waits for a response forever (CLIENT-7)
	modePipeline    = "pipeline"     // every block at once, advertised or not (CLIENT-4)
	modeBadPassword = "bad-password" // the username as password (CLIENT-8)
	modeTokenless   = "tokenless"    // UPLOADs without the token (TOKEN-5)
	modeNotJSON     = "not-json"     // a Python dict's repr as the JSON part (FRAME-3)
	modeStaleBlock  = "stale-block"  // the file's first bytes in every block (CLIENT-5)
	modeByeEarly    = "bye-early"    // BYE sent with the last block, before its response: breaks nothing
	modeByeWait     = "bye-wait"     // waits for BYE's answer, without a timeout (BYE-1)
	modeOwnToken    = "own-token"    // sends the token it rebuilds from its clock, not the one issued (TOKEN-5)
)

// testClient is the client's main: --server host:port --user U --file F.
func testClient(mode string, args []string) int {
	fs := flag.NewFlagSet("testclient", flag.ContinueOnError)
	server := fs.String("server", "127.0.0.1:1379", "")
	user := fs.String("user", "2362202", "")
	file := fs.String("file", "", "")
	timeout := fs.Duration("timeout", 2*time.Second, "")
	dir := fs.String("dir", "", "download the file back into this folder")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "error: "+format+"\n", a...)
		return 1
	}
	if *user == "-" {
		// The username typed on standard input, as interactive clients ask.
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil {
			return fail("reading the username: %v", err)
		}
		*user = strings.TrimSpace(line)
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return fail("%v", err)
	}
	conn, err := net.DialTimeout("tcp", *server, 5*time.Second)
	if err != nil {
		return fail("%v", err)
	}
	defer conn.Close()
	rd := spec.NewReader(conn, spec.Limits{})
	send := func(m *spec.Message) error {
		b, err := spec.EncodeFrame(m)
		if err != nil {
			return err
		}
		if mode == modeNotJSON {
			j := []byte(strings.ReplaceAll(m.JSONString(), `"`, `'`))
			b = append(append(spec.Header(uint32(len(j)), uint32(len(m.Binary))), j...), m.Binary...)
		}
		if mode == modeCharCount {
			j := m.AppendJSON(nil)
			b = append(append(spec.Header(uint32(utf8.RuneCount(j)), uint32(len(m.Binary))), j...), m.Binary...)
		}
		_, err = conn.Write(b)
		return err
	}
	recv := func() (*spec.Message, error) {
		if mode != modeNoTimeout && mode != modeByeWait {
			conn.SetReadDeadline(time.Now().Add(*timeout))
		}
		if mode == modeOneRecv {
			buf := make([]byte, 1<<16)
			n, err := conn.Read(buf)
			if err != nil {
				return nil, err
			}
			m, _, err := spec.DecodeFrame(buf[:n], spec.Limits{})
			return m, err
		}
		return rd.ReadMessage()
	}
	do := func(m *spec.Message) (*spec.Message, error) {
		if err := send(m); err != nil {
			return nil, err
		}
		resp, err := recv()
		if err != nil {
			return nil, err
		}
		if st, _ := resp.Status(); st != spec.StatusOK && mode != modeLiar {
			return nil, fmt.Errorf("%s refused: status %d", m.Operation(), st)
		}
		return resp, nil
	}
	password := md5hex([]byte(*user))
	if mode == modeBadPassword {
		password = *user
	}
	resp, err := do(spec.NewRequest(spec.OpLogin, spec.TypeAuth).Set(spec.FieldUsername, *user).Set(spec.FieldPassword, password))
	if err != nil {
		return fail("login: %v", err)
	}
	token, _ := resp.Token()
	if mode == modeOwnToken {
		// Rebuilt as soon as the response is read, as course clients do.
		token = refserver.CourseToken(*user, time.Now())
	}
	save := spec.NewRequest(spec.OpSave, spec.TypeFile).Set(spec.FieldToken, token).
		Set(spec.FieldKey, filepath.Base(*file)).Set(spec.FieldSize, len(data))
	plan, err := do(save)
	if err != nil {
		return fail("save: %v", err)
	}
	key, _ := plan.Key()
	bs, _ := plan.BlockSize()
	total, _ := plan.TotalBlock()
	serverMD5, _ := plan.MD5()
	if mode == modeFixedBlock || mode == modeLiar && bs == 0 {
		bs = spec.DefaultBlockSize
		total = spec.TotalBlocks(int64(len(data)), bs)
	}
	block := func(i int64) *spec.Message {
		m := spec.NewRequest(spec.OpUpload, spec.TypeFile).Set(spec.FieldKey, key).Set(spec.FieldBlockIndex, i)
		if mode != modeTokenless {
			m.Set(spec.FieldToken, token)
		}
		end := min((i+1)*bs, int64(len(data)))
		m.Binary = data[i*bs : end]
		if mode == modeStaleBlock {
			m.Binary = data[:end-i*bs] // the read never advanced
		}
		return m
	}
	if mode == modePipeline {
		for i := int64(0); i < total; i++ {
			if err := send(block(i)); err != nil {
				return fail("upload: %v", err)
			}
		}
		for i := int64(0); i < total; i++ {
			r, err := recv()
			if err != nil {
				return fail("upload: %v", err)
			}
			if m, err := r.MD5(); err == nil {
				serverMD5 = m
			}
		}
	} else if mode == modeByeEarly && total > 0 {
		for i := int64(0); i < total-1; i++ {
			if _, err := do(block(i)); err != nil {
				return fail("upload of block %d: %v", i, err)
			}
		}
		if err := send(block(total - 1)); err != nil {
			return fail("upload: %v", err)
		}
		send(spec.NewRequest(spec.OpBye, spec.TypeAuth).Set(spec.FieldToken, token))
		r, err := recv()
		if err != nil {
			return fail("upload of the last block: %v", err)
		}
		serverMD5, _ = r.MD5()
	} else {
		for i := int64(0); i < total; i++ {
			r, err := do(block(i))
			if err != nil {
				return fail("upload of block %d: %v", i, err)
			}
			if m, err := r.MD5(); err == nil {
				serverMD5 = m
			}
		}
	}
	if mode == modeByeWait {
		if _, err := do(spec.NewRequest(spec.OpBye, spec.TypeAuth).Set(spec.FieldToken, token)); err != nil {
			return fail("bye: %v", err)
		}
	} else if mode != modeByeEarly {
		send(spec.NewRequest(spec.OpBye, spec.TypeAuth).Set(spec.FieldToken, token))
	}
	if mode == modeLiar {
		fmt.Println("upload successful")
		return 0
	}
	if serverMD5 != md5hex(data) {
		return fail("MD5 mismatch: local %s, server %s", md5hex(data), serverMD5)
	}
	fmt.Printf("%s uploaded, MD5 %s verified\n", key, serverMD5)
	if *dir == "" {
		return 0
	}
	conn2, err := net.DialTimeout("tcp", *server, 5*time.Second)
	if err != nil {
		return fail("%v", err)
	}
	defer conn2.Close()
	conn, rd = conn2, spec.NewReader(conn2, spec.Limits{})
	plan, err = do(spec.NewRequest(spec.OpGet, spec.TypeFile).Set(spec.FieldToken, token).Set(spec.FieldKey, key))
	if err != nil {
		return fail("get: %v", err)
	}
	total, _ = plan.TotalBlock()
	want, _ := plan.MD5()
	var got []byte
	for i := int64(0); i < total; i++ {
		r, err := do(spec.NewRequest(spec.OpDownload, spec.TypeFile).Set(spec.FieldToken, token).Set(spec.FieldKey, key).Set(spec.FieldBlockIndex, i))
		if err != nil {
			return fail("download of block %d: %v", i, err)
		}
		got = append(got, r.Binary...)
	}
	if md5hex(got) != want {
		return fail("MD5 mismatch on download: %s, server %s", md5hex(got), want)
	}
	if err := os.WriteFile(filepath.Join(*dir, key), got, 0o644); err != nil {
		return fail("%v", err)
	}
	fmt.Printf("%s downloaded into %s\n", key, *dir)
	return 0
}
