package capgen

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Swap exchanges the places of packets i and j, keeping capture times
// increasing.
func (c *Conn) Swap(i, j int) {
	p := c.Packets
	p[i], p[j] = p[j], p[i]
	p[i].Time, p[j].Time = p[j].Time, p[i].Time
}

// Duplicate inserts a copy of packet i after packet at.
func (c *Conn) Duplicate(i, at int) {
	cp := *c.Packets[i]
	c.Insert(at+1, &cp)
}

// Insert puts p at index at.
func (c *Conn) Insert(at int, p *Packet) {
	p.Time = c.Packets[at-1].Time.Add(time.Microsecond)
	c.Packets = slices.Insert(c.Packets, at, p)
	c.retime()
}

// Drop removes packet i.
func (c *Conn) Drop(i int) { c.Packets = slices.Delete(c.Packets, i, i+1) }

func (c *Conn) retime() {
	for i := 1; i < len(c.Packets); i++ {
		if !c.Packets[i].Time.After(c.Packets[i-1].Time) {
			c.Packets[i].Time = c.Packets[i-1].Time.Add(time.Microsecond)
		}
	}
}

// Scenario is one generated fixture capture.
type Scenario struct {
	Name string   // file name
	Args []string // stepkit dump flags it needs
	What string   // what it shows
	// Write produces the capture.
	Write func(w *bytes.Buffer) error
}

var (
	t0         = time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC)
	clientV4   = netip.MustParseAddrPort("10.0.0.2:40001")
	serverV4   = netip.MustParseAddrPort("10.0.0.1:1379")
	clientV6   = netip.MustParseAddrPort("[fd00::2]:40002")
	serverV6   = netip.MustParseAddrPort("[fd00::1]:1379")
	fileSmall  = Pattern(10000, 1)
	blockSmall = int64(4096)
)

func write(link Link, ng bool, snaplen int, conns ...*Conn) func(*bytes.Buffer) error {
	return func(b *bytes.Buffer) error {
		w, err := NewWriter(b, link, ng, snaplen)
		if err != nil {
			return err
		}
		return w.WriteAll(conns...)
	}
}

// basicSession logs in, uploads and downloads a file, uses the DATA store,
// meets an error and says goodbye.
func basicSession(client, server netip.AddrPort, mss int) *Conn {
	c := NewConn(client, server, t0, mss)
	s := NewSession(c, "alice")
	c.Handshake()
	s.Login()
	s.Upload("report.txt", fileSmall, blockSmall)
	s.Download("report.txt", fileSmall, blockSmall)
	save := s.Req(spec.OpSave, spec.TypeData)
	save.Set(spec.FieldKey, "note")
	save.Set("text", "hello")
	ok := spec.NewResponse(spec.OpSave, spec.TypeData, spec.StatusOK, "OK")
	ok.Set(spec.FieldKey, "note")
	s.Do(save, ok)
	del := s.Req(spec.OpDelete, spec.TypeFile)
	del.Set(spec.FieldKey, "missing.bin")
	s.Do(del, Error(spec.OpDelete, spec.TypeFile, spec.StatusKeyNotFound, "Cannot find the key"))
	s.Bye()
	c.Close()
	return c
}

// smallSession is a short exchange for the link-type fixtures.
func smallSession(client, server netip.AddrPort) *Conn {
	c := NewConn(client, server, t0, 0)
	s := NewSession(c, "bob")
	c.Handshake()
	s.Login()
	save := s.Req(spec.OpSave, spec.TypeData)
	save.Set(spec.FieldKey, "k1")
	save.Set("value", 42)
	ok := spec.NewResponse(spec.OpSave, spec.TypeData, spec.StatusOK, "OK")
	ok.Set(spec.FieldKey, "k1")
	s.Do(save, ok)
	s.Bye()
	c.Close()
	return c
}

// uploadSession logs in and uploads fileSmall in 4096-byte blocks.
func uploadSession(mss int) (*Conn, *Session) {
	c := NewConn(clientV4, serverV4, t0, mss)
	s := NewSession(c, "carol")
	c.Handshake()
	s.Login()
	s.Upload("data.bin", fileSmall, blockSmall)
	return c, s
}

// Scenarios lists the generated fixtures.
func Scenarios() []Scenario {
	var out []Scenario
	add := func(name, what string, args []string, f func(*bytes.Buffer) error) {
		out = append(out, Scenario{Name: name, What: what, Args: args, Write: f})
	}

	add("basic.pcap", "login, upload, download, DATA, a 404 and BYE over Ethernet/IPv4", nil,
		write(Ethernet, false, 0, basicSession(clientV4, serverV4, 0)))

	add("ipv6.pcap", "the basic session over IPv6", nil,
		write(Ethernet, false, 0, basicSession(clientV6, serverV6, 1200)))

	add("pcapng.pcapng", "the basic session in a pcapng file", nil,
		write(Ethernet, true, 0, basicSession(clientV4, serverV4, 0)))

	add("sll2.pcap", "Linux cooked capture v2, as tcpdump -i any writes", nil,
		write(SLL2, false, 0, smallSession(clientV4, serverV4)))
	add("sll.pcap", "Linux cooked capture v1", nil, write(SLL, false, 0, smallSession(clientV4, serverV4)))
	add("null.pcap", "BSD loopback (NULL) link type, IPv6", nil, write(Null, false, 0, smallSession(clientV6, serverV6)))
	add("rawip.pcap", "raw IP link type", nil, write(RawIP, false, 0, smallSession(clientV4, serverV4)))

	{
		c, s := uploadSession(1000)
		s.Download("data.bin", fileSmall, blockSmall)
		s.Bye()
		c.Close()
		// Swap data segments of one message, in both directions.
		cd := c.DataPackets(true)
		c.Swap(cd[4], cd[5])
		c.Swap(cd[9], cd[11])
		sd := c.DataPackets(false)
		c.Swap(sd[len(sd)-6], sd[len(sd)-5])
		add("reorder.pcap", "segments out of order in both directions", nil, write(Ethernet, false, 0, c))
	}
	{
		c, s := uploadSession(1000)
		s.Bye()
		c.Close()
		cd := c.DataPackets(true)
		// An exact retransmission, late.
		c.Duplicate(cd[6], cd[8])
		// A retransmission overlapping two segments.
		cd = c.DataPackets(true)
		a, b := c.Packets[cd[10]], c.Packets[cd[11]]
		merged := append(append([]byte(nil), a.Payload[500:]...), b.Payload[:300]...)
		c.Insert(cd[11]+1, &Packet{FromClient: true, Seq: a.Seq + 500, Ack: a.Ack, ACK: true, Payload: merged})
		sd := c.DataPackets(false)
		c.Duplicate(sd[2], sd[2]+1)
		add("retransmit.pcap", "retransmitted and overlapping segments", nil, write(Ethernet, false, 0, c))
	}
	{
		c := NewConn(clientV4, serverV4, t0, 1000)
		s := NewSession(c, "dave")
		c.Handshake()
		s.Login()
		s.Upload("lost.bin", fileSmall, blockSmall)
		s.Download("lost.bin", fileSmall, blockSmall)
		s.Bye()
		c.Close()
		// Lose a segment inside upload block 1's binary, and one inside a
		// download response: the capture missed them, the peers did not.
		cd := c.DataPackets(true)
		sd := c.DataPackets(false)
		upLost := cd[10]
		downLost := sd[len(sd)-4]
		c.Drop(downLost)
		c.Drop(upLost)
		add("loss.pcap", "segments missing from the capture (acknowledged by the peer)", nil, write(Ethernet, false, 0, c))
	}
	{
		c, s := uploadSession(1000)
		s.Bye()
		c.Close()
		// Start the capture inside block 0's binary.
		cd := c.DataPackets(true)
		c.Packets = c.Packets[cd[4]:]
		add("midstream.pcap", "capture starting mid-connection", nil, write(Ethernet, false, 0, c))
	}
	{
		c, s := uploadSession(0)
		s.Bye()
		c.Close()
		add("snaplen.pcap", "every packet cut to 300 bytes by the snaplen", nil, write(Ethernet, false, 300, c))
	}
	{
		c, _ := uploadSession(1000)
		// The capture stops in the middle of block 1.
		cd := c.DataPackets(true)
		c.Packets = c.Packets[:cd[len(cd)-4]]
		add("cutoff.pcap", "capture ending in the middle of a frame", nil, write(Ethernet, false, 0, c))
	}
	add("charcount.pcap", "the reference's character-count JSON length with non-ASCII text", nil,
		write(Ethernet, false, 0, charCountSession()))
	add("diagnoses.pcap", "wrong block size, orphan response, unanswered request, unfinished upload, 3BODY", nil,
		write(Ethernet, false, 0, diagnosesSession()))
	{
		a, b := multiSessions()
		add("multi.pcap", "two clients at once, one of them pipelining", nil, write(Ethernet, false, 0, a, b))
	}
	{
		step := basicSession(netip.MustParseAddrPort("10.0.0.2:40010"), netip.MustParseAddrPort("10.0.0.1:8000"), 0)
		other := NewConn(netip.MustParseAddrPort("10.0.0.2:40011"), netip.MustParseAddrPort("10.0.0.1:80"), t0.Add(time.Millisecond), 0)
		other.Handshake()
		other.Write(true, []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"))
		other.Write(false, []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
		other.Close()
		add("anyport.pcap", "STEP on port 8000 next to HTTP, found by its bytes without flags", nil,
			write(Ethernet, false, 0, step, other))
	}
	return out
}

func charCountSession() *Conn {
	c := NewConn(clientV4, serverV4, t0, 0)
	s := NewSession(c, "张伟")
	c.Handshake()
	login := spec.NewRequest(spec.OpLogin, spec.TypeAuth)
	login.Set(spec.FieldUsername, s.User)
	login.Set(spec.FieldPassword, "0d3c1f6a3f6e5b1f5d8e0a7c4b2e9f10")
	s.Write(true, CharCountFrame(login))
	s.Token = CourseToken("zhangwei", t0)
	resp := spec.NewResponse(spec.OpLogin, spec.TypeAuth, spec.StatusOK, "Login successfully")
	resp.Set(spec.FieldToken, s.Token)
	s.Wait(s.Think)
	s.Write(false, CharCountFrame(resp))
	data := Pattern(3000, 9)
	p := Plan{Key: "报告.txt", Size: int64(len(data)), BlockSize: 2048, Total: 2}
	save := s.Req(spec.OpSave, spec.TypeFile)
	save.Set(spec.FieldKey, p.Key)
	save.Set(spec.FieldSize, p.Size)
	s.Write(true, CharCountFrame(save))
	plan := spec.NewResponse(spec.OpSave, spec.TypeFile, spec.StatusOK, "This is the upload plan.")
	plan.Set(spec.FieldKey, p.Key)
	plan.Set(spec.FieldSize, p.Size)
	plan.Set(spec.FieldTotalBlock, p.Total)
	plan.Set(spec.FieldBlockSize, p.BlockSize)
	s.Wait(s.Think)
	s.Write(false, CharCountFrame(plan))
	for i := int64(0); i < p.Total; i++ {
		s.Write(true, CharCountFrame(s.UploadReq(p, i, data)))
		s.Wait(s.Think)
		s.Write(false, CharCountFrame(s.UploadResp(p, i, data)))
	}
	s.Bye()
	c.Close()
	return c
}

func diagnosesSession() *Conn {
	c := NewConn(clientV4, serverV4, t0, 0)
	s := NewSession(c, "erin")
	c.Handshake()
	s.Login()
	// A client that cuts 20480-byte blocks whatever the plan says.
	data := Pattern(30000, 3)
	p := s.SavePlan("big.bin", int64(len(data)), 12800)
	req := s.Req(spec.OpUpload, spec.TypeFile)
	req.Set(spec.FieldKey, p.Key)
	req.Set(spec.FieldBlockIndex, 0)
	req.Binary = data[:20480]
	s.Do(req, Error(spec.OpUpload, spec.TypeFile, spec.StatusBlockSize, "The size for uploading does not match the required block_size"))
	// The reference sends nothing to AUTH with an operation other than LOGIN.
	s.Request(s.Req(spec.OpGet, spec.TypeAuth))
	// The easter egg.
	egg := spec.NewMessage()
	egg.Set(spec.FieldOperation, "GET")
	egg.Set(spec.FieldDirection, "EARTH")
	egg.Set(spec.FieldType, "DATA")
	s.Do(egg, spec.NewResponse(spec.Op3Body, spec.TypeDangerous, spec.Status3Body, "DO NOT ANSWER! DO NOT ANSWER! DO NOT ANSWER!"))
	// A response nobody asked for.
	s.Respond(Error(spec.OpError, spec.TypeError, spec.StatusCompulsory, "Compulsory field is missing"))
	// An upload abandoned after its first block.
	p2 := s.SavePlan("unfinished.bin", 10000, blockSmall)
	s.Do(s.UploadReq(p2, 0, fileSmall), s.UploadResp(p2, 0, fileSmall))
	s.Bye()
	c.Close()
	return c
}

func multiSessions() (*Conn, *Conn) {
	a := NewConn(netip.MustParseAddrPort("10.0.0.2:40021"), serverV4, t0, 0)
	sa := NewSession(a, "frank")
	a.Handshake()
	sa.Login()
	sa.Upload("a.bin", Pattern(9000, 5), blockSmall)
	sa.Bye()
	a.Close()

	b := NewConn(netip.MustParseAddrPort("10.0.0.3:40022"), serverV4, t0.Add(75*time.Microsecond), 0)
	sb := NewSession(b, "grace")
	b.Handshake()
	sb.Login()
	// Three requests before the first answer.
	var reqs, resps [][]byte
	for _, k := range []string{"x", "y", "z"} {
		r := sb.Req(spec.OpSave, spec.TypeData)
		r.Set(spec.FieldKey, k)
		reqs = append(reqs, Frame(r))
		ok := spec.NewResponse(spec.OpSave, spec.TypeData, spec.StatusOK, "OK")
		ok.Set(spec.FieldKey, k)
		resps = append(resps, Frame(ok))
	}
	b.Write(true, bytes.Join(reqs, nil))
	b.Wait(sb.Think)
	b.Write(false, bytes.Join(resps, nil))
	sb.Download("a.bin", Pattern(9000, 5), blockSmall)
	sb.Bye()
	b.Close()
	return a, b
}
