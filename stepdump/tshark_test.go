package stepdump_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stepkit/stepkit/stepdump"
)

const dissector = "wireshark/step.lua"

// perPacket maps a packet number to the "OPERATION/STATUS" of each STEP
// message that packet completes, in stream order.
type perPacket map[int64][]string

type summaryHandler struct{ got perPacket }

func (h *summaryHandler) Message(m *stepdump.Message) {
	op := m.Operation()
	if m.Msg == nil {
		op = "?"
	}
	st := "-"
	if s, ok := m.Status(); ok {
		st = strconv.Itoa(int(s))
	}
	h.got[m.Packet] = append(h.got[m.Packet], op+"/"+st)
}
func (h *summaryHandler) Note(*stepdump.Note)    {}
func (h *summaryHandler) ConnEnd(*stepdump.Conn) {}

func stepdumpPackets(t *testing.T, path string, opts stepdump.Options) perPacket {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := &summaryHandler{got: perPacket{}}
	if _, err := stepdump.Decode(context.Background(), f, opts, h); err != nil {
		t.Fatal(err)
	}
	return h.got
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	// CI installs the tool (.ci/run) and sets CI, so there a missing tool
	// fails the run. On a developer's machine the check cannot run without
	// it; it says so and how to install it.
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (apt-get install -y %s): %v", name, name, err)
	}
	t.Skipf("%s is not installed: apt-get install -y %s to run this check", name, name)
	return ""
}

// tsharkPackets runs the Lua dissector over a capture.
func tsharkPackets(t *testing.T, path string, anyPort bool) (perPacket, string) {
	t.Helper()
	tshark := requireTool(t, "tshark")
	lua, err := filepath.Abs(dissector)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "-r", path, "-X", "lua_script:" + lua,
		"-o", "tcp.reassemble_out_of_order:TRUE",
		"-Y", "step", "-T", "fields", "-e", "frame.number", "-e", "step.summary",
		"-E", "occurrence=a", "-E", "aggregator=,"}
	if !anyPort {
		// stepdump looks at port 1379 only unless told otherwise.
		args = append(args, "-o", "step.heuristic:FALSE")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", path, err, out)
	}
	got := perPacket{}
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Split(line, "\t")
		if len(fields) != 2 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		got[n] = append(got[n], strings.Split(fields[1], ",")...)
	}
	return got, string(out)
}

// damaged fixtures: Wireshark cannot reassemble across bytes the capture
// lost, so the dissector and stepdump agree only on the frames both see
// whole.
var damaged = map[string]bool{"loss.pcap": true, "snaplen.pcap": true, "cutoff.pcap": true, "midstream.pcap": true}

// TestDissectorAgrees runs the Lua dissector on every fixture with tshark:
// no Lua error, and the same messages, in the same packets, as stepdump.
func TestDissectorAgrees(t *testing.T) {
	for _, path := range fixtures(t) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			cfg := configFor(name)
			ts, raw := tsharkPackets(t, path, !cfg.OnlyPort)
			if strings.Contains(raw, "Lua Error") || strings.Contains(raw, "lua_script") {
				t.Fatalf("tshark reports a Lua problem:\n%s", raw)
			}
			sd := stepdumpPackets(t, path, stepdump.Options{OnlyPort: cfg.OnlyPort})
			if len(sd) == 0 {
				t.Fatal("stepdump decoded nothing")
			}
			if !damaged[name] {
				if !reflect.DeepEqual(ts, sd) {
					t.Fatalf("dissector and stepdump disagree:\n%s", diffPackets(ts, sd))
				}
				return
			}
			// Every message the dissector decodes whole, stepdump shows
			// in the same packet; stepdump may show more (it decodes
			// frames with lost binary bytes), never fewer.
			agree := 0
			for pkt, tsMsgs := range ts {
				for _, m := range tsMsgs {
					if m == "" || strings.HasPrefix(m, "?") {
						continue
					}
					if !contains(sd[pkt], m) {
						t.Errorf("packet %d: dissector shows %s, stepdump shows %v", pkt, m, sd[pkt])
					}
					agree++
				}
			}
			if agree == 0 {
				t.Fatalf("no message in common:\n%s", diffPackets(ts, sd))
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func diffPackets(ts, sd perPacket) string {
	keys := map[int64]bool{}
	for k := range ts {
		keys[k] = true
	}
	for k := range sd {
		keys[k] = true
	}
	var ks []int64
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	var b strings.Builder
	for _, k := range ks {
		mark := " "
		if !reflect.DeepEqual(ts[k], sd[k]) {
			mark = "!"
		}
		fmt.Fprintf(&b, "%s pkt %4d  tshark %-40v stepdump %v\n", mark, k, ts[k], sd[k])
	}
	return b.String()
}
