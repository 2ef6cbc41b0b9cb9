package stepdump

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// packetSource is what both capture formats offer.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// capture reads packets from a pcap or pcapng stream.
type capture struct {
	src      packetSource
	linkType layers.LinkType
	ng       bool
	format   string
}

var pcapngMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}

// openCapture sniffs the format from the first bytes: pcapng starts with a
// section header block, pcap with one of four magic numbers (either byte
// order, micro- or nanosecond timestamps). Both may be gzip-compressed.
//
// With atOffsets, a capture that can be read at any offset (a file) is
// read by a fileReader, which leaves unread what the decoder passes over.
func openCapture(r io.Reader, atOffsets bool) (*capture, error) {
	var file *io.SectionReader
	if atOffsets {
		file = sectionOf(r)
		if file != nil {
			r = io.NewSectionReader(file, 0, file.Size())
		}
	}
	if file == nil {
		return openStream(r, 1<<20)
	}
	// The stream reader checks the headers and gives their errors; the
	// packets are then read at their offsets.
	c, err := openStream(r, 4<<10)
	if err != nil {
		return nil, err
	}
	switch {
	case c.format == "pcapng":
		c.src = newFileReader(file, file.Size(), true)
	case c.format == "pcap" && !gzipped(file):
		c.src = newFileReader(file, file.Size(), false)
	}
	return c, nil
}

// sectionOf returns the rest of r when it can be read at any offset, or nil.
func sectionOf(r io.Reader) *io.SectionReader {
	ra, ok := r.(io.ReaderAt)
	sk, ok2 := r.(io.Seeker)
	if !ok || !ok2 {
		return nil
	}
	pos, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil
	}
	end, err := sk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil
	}
	if _, err := sk.Seek(pos, io.SeekStart); err != nil || end < pos {
		return nil
	}
	return io.NewSectionReader(ra, pos, end-pos)
}

func gzipped(ra io.ReaderAt) bool {
	var b [2]byte
	_, err := ra.ReadAt(b[:], 0)
	return err == nil && b[0] == 0x1f && b[1] == 0x8b
}

// openStream reads the capture from start to end.
func openStream(r io.Reader, bufSize int) (*capture, error) {
	br := bufio.NewReaderSize(r, bufSize)
	head, err := br.Peek(4)
	if err != nil {
		if len(head) == 0 {
			return nil, errors.New("empty input: not a capture")
		}
		return nil, fmt.Errorf("input too short for a capture header (%d bytes)", len(head))
	}
	if bytes.Equal(head, pcapngMagic) {
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, fmt.Errorf("read pcapng section header: %w", err)
		}
		return &capture{src: ng, linkType: ng.LinkType(), ng: true, format: "pcapng"}, nil
	}
	if head[0] == 0x1f && head[1] == 0x8b {
		// gzip: pcapgo unwraps it for pcap; for pcapng let it try too.
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read compressed pcap header: %w", err)
		}
		return &capture{src: pr, linkType: pr.LinkType(), format: "pcap"}, nil
	}
	switch binary.BigEndian.Uint32(head) {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read pcap header: %w", err)
		}
		return &capture{src: pr, linkType: pr.LinkType(), format: "pcap"}, nil
	}
	return nil, fmt.Errorf("not a pcap or pcapng capture (first bytes % x)", head)
}

// packetLinkType is the link type of one packet: pcapng names it per
// interface.
func (c *capture) packetLinkType(ci *gopacket.CaptureInfo) layers.LinkType {
	if c.ng && len(ci.AncillaryData) > 0 {
		if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
			return lt
		}
	}
	return c.linkType
}

// errUnsupportedLink marks packets of a link type the decoder cannot read.
var errUnsupportedLink = errors.New("unsupported link type")

// networkLayer strips the link-layer header and returns the IP packet and
// its version (4 or 6), 0 for non-IP packets (ARP, ...).
func networkLayer(lt layers.LinkType, data []byte) ([]byte, int, error) {
	var etherType uint16
	switch lt {
	case layers.LinkTypeEthernet:
		if len(data) < 14 {
			return nil, 0, errors.New("ethernet header truncated")
		}
		etherType = binary.BigEndian.Uint16(data[12:14])
		data = data[14:]
		// 802.1Q and 802.1ad tags, possibly stacked.
		for etherType == 0x8100 || etherType == 0x88a8 {
			if len(data) < 4 {
				return nil, 0, errors.New("VLAN tag truncated")
			}
			etherType = binary.BigEndian.Uint16(data[2:4])
			data = data[4:]
		}
	case layers.LinkTypeLinuxSLL:
		if len(data) < 16 {
			return nil, 0, errors.New("linux cooked header truncated")
		}
		etherType = binary.BigEndian.Uint16(data[14:16])
		data = data[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(data) < 20 {
			return nil, 0, errors.New("linux cooked v2 header truncated")
		}
		etherType = binary.BigEndian.Uint16(data[0:2])
		data = data[20:]
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(data) < 4 {
			return nil, 0, errors.New("loopback header truncated")
		}
		// The family is in the writer's byte order for NULL and big-endian
		// for LOOP; it is always small, so whichever half is non-zero tells.
		fam := binary.LittleEndian.Uint32(data[:4])
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(data[:4])
		}
		data = data[4:]
		switch fam {
		case 2:
			return ipVersion(data, 4)
		case 10, 24, 28, 30:
			return ipVersion(data, 6)
		}
		return nil, 0, nil
	case layers.LinkTypeRaw, layers.LinkType(12), layers.LinkType(14), layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		if len(data) < 1 {
			return nil, 0, errors.New("empty raw IP packet")
		}
		return ipVersion(data, int(data[0]>>4))
	default:
		return nil, 0, fmt.Errorf("%w %d (%s)", errUnsupportedLink, int(lt), lt)
	}
	switch etherType {
	case 0x0800:
		return ipVersion(data, 4)
	case 0x86dd:
		return ipVersion(data, 6)
	}
	return nil, 0, nil
}

func ipVersion(data []byte, v int) ([]byte, int, error) {
	if len(data) == 0 {
		return nil, 0, errors.New("IP header missing")
	}
	if got := int(data[0] >> 4); got != v {
		return nil, 0, fmt.Errorf("IP version %d where %d was expected", got, v)
	}
	return data, v, nil
}
