// Package capgen writes synthetic STEP captures: TCP connections built
// packet by packet with gopacket's layers and written with pcapgo, so that
// every damage a real capture can show (reordering, retransmission, loss,
// a late start, truncation) can be produced on purpose.
package capgen

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one TCP segment of a connection.
type Packet struct {
	FromClient bool
	Seq, Ack   uint32
	SYN, ACK   bool
	FIN, RST   bool
	Payload    []byte
	Time       time.Time
}

// Conn builds the packets of one TCP connection.
type Conn struct {
	Client, Server netip.AddrPort
	MSS            int
	Packets        []*Packet
	cseq, sseq     uint32
	now            time.Time
	Step           time.Duration // time between packets
}

// NewConn starts a connection at t. MSS 0 means 1460.
func NewConn(client, server netip.AddrPort, t time.Time, mss int) *Conn {
	if mss == 0 {
		mss = 1460
	}
	return &Conn{Client: client, Server: server, MSS: mss, cseq: 1000, sseq: 50000, now: t, Step: 50 * time.Microsecond}
}

// Now is the time of the next packet.
func (c *Conn) Now() time.Time { return c.now }

// Wait moves the clock.
func (c *Conn) Wait(d time.Duration) { c.now = c.now.Add(d) }

func (c *Conn) add(p *Packet) *Packet {
	p.Time = c.now
	c.now = c.now.Add(c.Step)
	c.Packets = append(c.Packets, p)
	return p
}

// Handshake adds SYN, SYN-ACK, ACK.
func (c *Conn) Handshake() {
	c.add(&Packet{FromClient: true, Seq: c.cseq, SYN: true})
	c.cseq++
	c.add(&Packet{FromClient: false, Seq: c.sseq, Ack: c.cseq, SYN: true, ACK: true})
	c.sseq++
	c.add(&Packet{FromClient: true, Seq: c.cseq, Ack: c.sseq, ACK: true})
}

// Write sends data in MSS-sized segments, then the peer acknowledges.
func (c *Conn) Write(fromClient bool, data []byte) {
	for len(data) > 0 {
		n := min(len(data), c.MSS)
		if fromClient {
			c.add(&Packet{FromClient: true, Seq: c.cseq, Ack: c.sseq, ACK: true, Payload: data[:n]})
			c.cseq += uint32(n)
		} else {
			c.add(&Packet{FromClient: false, Seq: c.sseq, Ack: c.cseq, ACK: true, Payload: data[:n]})
			c.sseq += uint32(n)
		}
		data = data[n:]
	}
	c.add(&Packet{FromClient: !fromClient, Seq: c.seq(!fromClient), Ack: c.seq(fromClient), ACK: true})
}

func (c *Conn) seq(client bool) uint32 {
	if client {
		return c.cseq
	}
	return c.sseq
}

// Close adds the FIN exchange, the client first.
func (c *Conn) Close() {
	c.add(&Packet{FromClient: true, Seq: c.cseq, Ack: c.sseq, ACK: true, FIN: true})
	c.cseq++
	c.add(&Packet{FromClient: false, Seq: c.sseq, Ack: c.cseq, ACK: true, FIN: true})
	c.sseq++
	c.add(&Packet{FromClient: true, Seq: c.cseq, Ack: c.sseq, ACK: true})
}

// DataPackets returns the indexes of the packets that carry payload in one
// direction.
func (c *Conn) DataPackets(fromClient bool) []int {
	var out []int
	for i, p := range c.Packets {
		if p.FromClient == fromClient && len(p.Payload) > 0 {
			out = append(out, i)
		}
	}
	return out
}

// Link is the link-layer framing of a capture.
type Link int

// Link types a capture can use.
const (
	Ethernet Link = iota
	SLL
	SLL2
	Null // BSD loopback
	RawIP
)

func (l Link) linkType() layers.LinkType {
	switch l {
	case SLL:
		return layers.LinkTypeLinuxSLL
	case SLL2:
		return layers.LinkTypeLinuxSLL2
	case Null:
		return layers.LinkTypeNull
	case RawIP:
		return layers.LinkTypeRaw
	}
	return layers.LinkTypeEthernet
}

// Writer writes packets to a pcap or pcapng file.
type Writer struct {
	link    Link
	snaplen int
	pw      *pcapgo.Writer
	ngw     *pcapgo.NgWriter
	buf     gopacket.SerializeBuffer
}

// NewWriter writes the file header. snaplen 0 means 262144.
func NewWriter(w io.Writer, link Link, ng bool, snaplen int) (*Writer, error) {
	if snaplen == 0 {
		snaplen = 262144
	}
	cw := &Writer{link: link, snaplen: snaplen, buf: gopacket.NewSerializeBuffer()}
	if ng {
		ngw, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{
			Name: "lo", LinkType: link.linkType(), SnapLength: uint32(snaplen), TimestampResolution: 9,
		}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "stepkit capgen"}})
		if err != nil {
			return nil, fmt.Errorf("pcapng header: %w", err)
		}
		cw.ngw = ngw
		return cw, nil
	}
	cw.pw = pcapgo.NewWriterNanos(w)
	if err := cw.pw.WriteFileHeader(uint32(snaplen), link.linkType()); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	return cw, nil
}

// Flush ends a pcapng file's buffered blocks.
func (w *Writer) Flush() error {
	if w.ngw != nil {
		return w.ngw.Flush()
	}
	return nil
}

var (
	macClient = []byte{0x02, 0, 0, 0, 0, 1}
	macServer = []byte{0x02, 0, 0, 0, 0, 2}
)

// WritePacket serialises one segment of c.
func (w *Writer) WritePacket(c *Conn, p *Packet) error {
	src, dst := c.Client, c.Server
	smac, dmac := macClient, macServer
	if !p.FromClient {
		src, dst = dst, src
		smac, dmac = dmac, smac
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: p.Seq, Ack: p.Ack, SYN: p.SYN, ACK: p.ACK, FIN: p.FIN, RST: p.RST, Window: 65535}
	var ls []gopacket.SerializableLayer
	v6 := src.Addr().Is6()
	etherType := layers.EthernetTypeIPv4
	if v6 {
		etherType = layers.EthernetTypeIPv6
	}
	var prefix []byte // link headers gopacket cannot serialise
	switch w.link {
	case Ethernet:
		ls = append(ls, &layers.Ethernet{SrcMAC: smac, DstMAC: dmac, EthernetType: etherType})
	case SLL:
		// packet type, ARPHRD, address length, address (8), protocol
		prefix = []byte{0, 0, 0x03, 0x04, 0, 6, smac[0], smac[1], smac[2], smac[3], smac[4], smac[5], 0, 0,
			byte(etherType >> 8), byte(etherType)}
	case SLL2:
		// protocol, reserved, interface index, ARPHRD, packet type, address length, address (8)
		prefix = []byte{byte(etherType >> 8), byte(etherType), 0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6,
			smac[0], smac[1], smac[2], smac[3], smac[4], smac[5], 0, 0}
	case Null:
		fam := layers.ProtocolFamilyIPv4
		if v6 {
			fam = layers.ProtocolFamilyIPv6BSD
		}
		ls = append(ls, &layers.Loopback{Family: fam})
	}
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	}
	ls = append(ls, tcp, gopacket.Payload(p.Payload))
	if err := gopacket.SerializeLayers(w.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return fmt.Errorf("serialise packet: %w", err)
	}
	data := w.buf.Bytes()
	if prefix != nil {
		data = append(prefix, data...)
	}
	ci := gopacket.CaptureInfo{Timestamp: p.Time, Length: len(data), CaptureLength: min(len(data), w.snaplen)}
	data = data[:ci.CaptureLength]
	if w.ngw != nil {
		return w.ngw.WritePacket(ci, data)
	}
	return w.pw.WritePacket(ci, data)
}

// WriteAll writes the packets of several connections merged by time.
func (w *Writer) WriteAll(conns ...*Conn) error {
	idx := make([]int, len(conns))
	for {
		best := -1
		for i, c := range conns {
			if idx[i] >= len(c.Packets) {
				continue
			}
			if best < 0 || c.Packets[idx[i]].Time.Before(conns[best].Packets[idx[best]].Time) {
				best = i
			}
		}
		if best < 0 {
			return w.Flush()
		}
		c := conns[best]
		if err := w.WritePacket(c, c.Packets[idx[best]]); err != nil {
			return err
		}
		idx[best]++
	}
}
