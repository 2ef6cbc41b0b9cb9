package stepdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ErrNoPrivilege marks a live capture refused for want of root or
// CAP_NET_RAW.
var ErrNoPrivilege = errors.New("live capture needs root or the CAP_NET_RAW capability")

// LiveOptions say where to capture and when to stop.
type LiveOptions struct {
	Interface string
	// Port, with OnlyPort, is the one TCP port the kernel lets through.
	// Otherwise every TCP packet is captured, so that STEP found on other
	// ports by its bytes is decoded too.
	Port     int
	OnlyPort bool
	// Count ends the capture after so many packets (0: no limit).
	Count int64
	// Duration ends it after so long (0: no limit). Cancelling the
	// context (Ctrl-C) ends it too.
	Duration time.Duration
	// Save, when not nil, receives every packet captured as pcapng.
	Save io.Writer
	// Started, when set, is called once the kernel filters and keeps
	// packets for the capture.
	Started func()
}

// LiveStats counts what a live capture saw.
type LiveStats struct {
	Interface string
	Captured  int64 // packets read
	// Received and Dropped are the kernel's counts (PACKET_STATISTICS):
	// packets that passed the filter, and those the socket's buffer had
	// no room for.
	Received int64
	Dropped  int64
}

// liveSource reads packets from an AF_PACKET socket through the memory
// ring the kernel fills (TPACKET_V3, as libpcap uses): no libpcap, no cgo.
type liveSource struct {
	h     *afpacket.TPacket
	opts  LiveOptions
	save  *pcapgo.NgWriter
	stats LiveStats
	start time.Time

	// A goroutine empties the kernel's ring into packets while the
	// decoder works (as dumpcap does for tshark); readErr is why it
	// stopped, when not closed.
	packets chan livePacket
	done    chan struct{} // closed to stop the reader
	exited  chan struct{} // closed once it has, and the ring is gone
	readErr error

	mu     sync.Mutex
	closed bool
	stop   func() bool
	cancel context.CancelFunc // of the duration's timer
}

// packetSocketError says why a packet socket cannot be opened, naming the
// privilege it takes when that is what is missing.
func packetSocketError(iface string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (capturing on %s); grant it with: sudo setcap cap_net_raw+ep %s", ErrNoPrivilege, iface, executable())
	}
	return fmt.Errorf("open packet socket on %s: %w", iface, err)
}

func executable() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "$(command -v stepkit)"
}

// openLive opens the capture: it checks the interface and the privilege
// first, so that each failure says what to do.
func openLive(ctx context.Context, o LiveOptions) (*liveSource, error) {
	ifi, err := net.InterfaceByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("no interface %q (%s)", o.Interface, interfaceNames())
	}
	// The handle reads frames with their link-layer header: Ethernet, and
	// loopback, which Linux gives an all-zero Ethernet header.
	if t := arphrd(ifi.Name); t != unix.ARPHRD_ETHER && t != unix.ARPHRD_LOOPBACK {
		return nil, fmt.Errorf("interface %s is neither Ethernet nor loopback (hardware type %d): capture it with tcpdump -w - | stepkit dump -", ifi.Name, t)
	}
	h, err := afpacket.NewTPacket(afpacket.OptInterface(ifi.Name), afpacket.OptBlockSize(ringBlock), afpacket.OptNumBlocks(ringBlocks),
		afpacket.OptBlockTimeout(10*time.Millisecond), afpacket.OptPollTimeout(pollEvery))
	if err != nil {
		return nil, packetSocketError(ifi.Name, err)
	}
	filter, err := bpf.Assemble(stepFilter(o.Port, o.OnlyPort, ifi.Flags&net.FlagLoopback != 0))
	if err == nil {
		err = h.SetBPF(filter)
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("attach the capture filter on %s: %w", ifi.Name, err)
	}
	// Counters restart once the filter is on.
	_ = h.InitSocketStats()
	s := &liveSource{h: h, opts: o, start: time.Now(), packets: make(chan livePacket, livePackets),
		done: make(chan struct{}), exited: make(chan struct{})}
	s.stats.Interface = ifi.Name
	if o.Save != nil {
		intf := pcapgo.DefaultNgInterface
		intf.Name, intf.LinkType, intf.SnapLength = ifi.Name, layers.LinkTypeEthernet, ringBlock
		opt := pcapgo.DefaultNgWriterOptions
		opt.SectionInfo.Application = "stepkit dump"
		if s.save, err = pcapgo.NewNgWriterInterface(o.Save, intf, opt); err != nil {
			h.Close()
			return nil, fmt.Errorf("write capture: %w", err)
		}
	}
	if o.Duration > 0 {
		ctx, s.cancel = context.WithTimeout(ctx, o.Duration)
	}
	s.stop = context.AfterFunc(ctx, s.close)
	go s.read()
	if o.Started != nil {
		o.Started()
	}
	return s, nil
}

type livePacket struct {
	data []byte
	ci   gopacket.CaptureInfo
}

// livePackets bounds the packets read but not yet decoded: up to 16 MiB
// of loopback's 64 KiB packets. Beyond, the kernel's ring holds them, then
// drops and counts them.
const livePackets = 256

// The ring: 8 blocks of 1 MiB, as large as libpcap's default buffer and
// more, filled by the kernel while the decoder works. A block is handed
// over when full or after 10 ms; the reader looks for the end of the
// capture at least every pollEvery.
const (
	ringBlock  = 1 << 20
	ringBlocks = 8
	pollEvery  = 100 * time.Millisecond
)

// read moves packets from the ring to the decoder until the capture is
// closed; then it lets the ring go, which no read may then touch.
func (s *liveSource) read() {
	defer close(s.exited)
	defer s.h.Close()
	defer close(s.packets)
	for {
		select {
		case <-s.done:
			return
		default:
		}
		data, ci, err := s.h.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		}
		if err != nil {
			s.mu.Lock()
			if !s.closed {
				s.readErr = fmt.Errorf("capture on %s: %w", s.stats.Interface, err)
			}
			s.mu.Unlock()
			return
		}
		select {
		case s.packets <- livePacket{data: append([]byte(nil), data...), ci: ci}:
		case <-s.done:
			return
		}
	}
}

// close ends the capture: the reader stops within pollEvery.
func (s *liveSource) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	// The kernel's counters are read while the socket is open.
	if st, st3, err := s.h.SocketStats(); err == nil {
		s.stats.Received = int64(st.Packets() + st3.Packets())
		s.stats.Dropped = int64(st.Drops() + st3.Drops())
	}
	close(s.done)
}

// ZeroCopyReadPacketData returns the next packet, io.EOF once the capture
// has ended and the packets read before are decoded.
func (s *liveSource) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	if s.opts.Count > 0 && s.stats.Captured >= s.opts.Count {
		s.close()
		return nil, gopacket.CaptureInfo{}, io.EOF
	}
	p, ok := <-s.packets
	if !ok {
		s.mu.Lock()
		err := s.readErr
		s.mu.Unlock()
		if err != nil {
			return nil, gopacket.CaptureInfo{}, err
		}
		return nil, gopacket.CaptureInfo{}, io.EOF
	}
	data, ci := p.data, p.ci
	s.stats.Captured++
	// The VLAN the kernel stripped is of no use to the decoder, and the
	// saved file has one interface.
	ci.AncillaryData = nil
	ci.InterfaceIndex = 0
	if s.save != nil {
		if err := s.save.WritePacket(ci, data); err != nil {
			return nil, ci, fmt.Errorf("save packet: %w", err)
		}
	}
	return data, ci, nil
}

// finish stops the capture and completes the saved file with the
// kernel's counts, as dumpcap does.
func (s *liveSource) finish() error {
	s.stop()
	if s.cancel != nil {
		s.cancel()
	}
	s.close()
	<-s.exited
	if s.save == nil {
		return nil
	}
	now := time.Now()
	if err := s.save.WriteInterfaceStats(0, pcapgo.NgInterfaceStatistics{LastUpdate: now, StartTime: s.start, EndTime: now,
		PacketsReceived: uint64(s.stats.Received), PacketsDropped: uint64(s.stats.Dropped)}); err != nil {
		return fmt.Errorf("save capture: %w", err)
	}
	if err := s.save.Flush(); err != nil {
		return fmt.Errorf("save capture: %w", err)
	}
	return nil
}

// stepFilter is the kernel filter of a capture, for frames with an
// Ethernet header: IPv4 and IPv6 TCP, on port alone when onlyPort. On
// loopback every packet passes the packet socket twice, going out and
// coming in; like libpcap, the outgoing copy is dropped.
func stepFilter(port int, onlyPort, loopback bool) []bpf.Instruction {
	const (
		accept = 0x40000
		ethLen = 14
	)
	var p []bpf.Instruction
	// Jumps are to labels, resolved once the program is laid out.
	type jump struct {
		at          int
		true, false string
	}
	var jumps []jump
	labels := map[string]int{}
	cond := func(c bpf.JumpTest, v uint32, t, f string) {
		jumps = append(jumps, jump{len(p), t, f})
		p = append(p, bpf.JumpIf{Cond: c, Val: v})
	}
	label := func(name string) { labels[name] = len(p) }
	if loopback {
		p = append(p, bpf.LoadExtension{Num: bpf.ExtType})
		cond(bpf.JumpEqual, unix.PACKET_OUTGOING, "drop", "")
	}
	p = append(p, bpf.LoadAbsolute{Off: 12, Size: 2})
	cond(bpf.JumpEqual, 0x0800, "", "ip6")
	// IPv4: TCP, not a later fragment (it has no TCP header).
	p = append(p, bpf.LoadAbsolute{Off: ethLen + 9, Size: 1})
	cond(bpf.JumpEqual, 6, "", "drop")
	if !onlyPort {
		p = append(p, bpf.RetConstant{Val: accept})
	} else {
		p = append(p, bpf.LoadAbsolute{Off: ethLen + 6, Size: 2})
		cond(bpf.JumpBitsSet, 0x1fff, "drop", "")
		p = append(p, bpf.LoadMemShift{Off: ethLen})
		p = append(p, bpf.LoadIndirect{Off: ethLen, Size: 2})
		cond(bpf.JumpEqual, uint32(port), "pass", "")
		p = append(p, bpf.LoadIndirect{Off: ethLen + 2, Size: 2})
		cond(bpf.JumpEqual, uint32(port), "pass", "drop")
	}
	label("ip6")
	p = append(p, bpf.LoadAbsolute{Off: 12, Size: 2})
	cond(bpf.JumpEqual, 0x86dd, "", "drop")
	p = append(p, bpf.LoadAbsolute{Off: ethLen + 6, Size: 1})
	cond(bpf.JumpEqual, 6, "", "drop")
	if onlyPort {
		p = append(p, bpf.LoadAbsolute{Off: ethLen + 40, Size: 2})
		cond(bpf.JumpEqual, uint32(port), "pass", "")
		p = append(p, bpf.LoadAbsolute{Off: ethLen + 42, Size: 2})
		cond(bpf.JumpEqual, uint32(port), "pass", "drop")
	}
	label("pass")
	p = append(p, bpf.RetConstant{Val: accept})
	label("drop")
	p = append(p, bpf.RetConstant{Val: 0})
	for _, j := range jumps {
		in := p[j.at].(bpf.JumpIf)
		skip := func(name string) uint8 {
			if name == "" {
				return 0
			}
			return uint8(labels[name] - j.at - 1)
		}
		in.SkipTrue, in.SkipFalse = skip(j.true), skip(j.false)
		p[j.at] = in
	}
	return p
}

// arphrd is an interface's hardware type, from sysfs.
func arphrd(name string) int {
	b, err := os.ReadFile("/sys/class/net/" + name + "/type")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

func interfaceNames() string {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return "no interface found"
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return "interfaces: " + strings.Join(names, ", ")
}
