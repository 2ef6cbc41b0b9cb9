package refclient

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A journal records the blocks of one transfer the server has acknowledged
// (upload) or that are safely in the partial file (download), so that an
// interrupted transfer continues where it stopped.
//
// Format: a text file named after the SHA-256 of the transfer's identity,
// "<dir>/<hex>.journal". The first line is a JSON header (journalHeader);
// each further line is the decimal index of one acknowledged block,
// appended as the acknowledgement arrives. A torn last line (the process
// died while writing it) is ignored.
type journal struct {
	path string
	hdr  journalHeader

	mu    sync.Mutex
	f     *os.File
	acked []bool
	n     int64 // number of acked blocks
	buf   []byte
}

// journalHeader identifies a transfer and its plan.
type journalHeader struct {
	Version    int    `json:"version"`
	Op         string `json:"op"` // "upload" or "download"
	Server     string `json:"server"`
	User       string `json:"user"`
	Key        string `json:"key"`  // the key the server uses
	Path       string `json:"path"` // the local file, absolute
	Size       int64  `json:"size"`
	ModTime    int64  `json:"mtime,omitempty"` // upload: the file's mtime in ns
	BlockSize  int64  `json:"block_size"`
	TotalBlock int64  `json:"total_block"`
	MD5        string `json:"md5,omitempty"` // download: the plan's md5
}

const journalVersion = 1

// journalPath names the journal of a transfer: op, server, user, the key
// asked for and the local path identify it.
func journalPath(dir, op, server, user, key, local string) string {
	h := sha256.New()
	for _, s := range []string{op, server, user, key, local} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return filepath.Join(dir, hex.EncodeToString(h.Sum(nil)[:16])+".journal")
}

// loadJournal reads the journal at path. It returns nil (and no error)
// when there is none or it cannot be used.
func loadJournal(path string) *journal {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	line, rest, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return nil
	}
	var hdr journalHeader
	if json.Unmarshal(line, &hdr) != nil || hdr.Version != journalVersion ||
		hdr.TotalBlock < 0 || hdr.TotalBlock > 1<<32 || hdr.BlockSize <= 0 {
		return nil
	}
	j := &journal{path: path, hdr: hdr, acked: make([]bool, hdr.TotalBlock)}
	for {
		line, more, ok := bytes.Cut(rest, []byte{'\n'})
		if !ok {
			break // no line, or a torn one
		}
		rest = more
		i, err := strconv.ParseInt(string(line), 10, 64)
		if err != nil || i < 0 || i >= hdr.TotalBlock {
			continue // a torn line
		}
		if !j.acked[i] {
			j.acked[i] = true
			j.n++
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil
	}
	// Start a fresh line in case the last one was torn.
	if len(data) > 0 && data[len(data)-1] != '\n' {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil
		}
	}
	j.f = f
	return j
}

// createJournal starts a journal at path, replacing any old one.
func createJournal(path string, hdr journalHeader) (*journal, error) {
	hdr.Version = journalVersion
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	line, err := json.Marshal(hdr)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &journal{path: path, hdr: hdr, f: f, acked: make([]bool, hdr.TotalBlock)}, nil
}

// has reports whether block i was acknowledged.
func (j *journal) has(i int64) bool {
	if j == nil {
		return false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.acked[i]
}

// count is the number of acknowledged blocks.
func (j *journal) count() int64 {
	if j == nil {
		return 0
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.n
}

// ack records block i. One write per block: the line reaches the kernel
// before the next block is acknowledged, which survives the process dying.
func (j *journal) ack(i int64) error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.acked[i] {
		return nil
	}
	j.acked[i] = true
	j.n++
	j.buf = strconv.AppendInt(j.buf[:0], i, 10)
	j.buf = append(j.buf, '\n')
	if _, err := j.f.Write(j.buf); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return nil
}

// close closes the journal file, keeping it for a later resume.
func (j *journal) close() {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}

// remove deletes the journal: the transfer is over.
func (j *journal) remove() {
	if j == nil {
		return
	}
	j.close()
	os.Remove(j.path)
}

// DefaultJournalMaxAge is how long the journal of a transfer that never
// finished is kept by default.
const DefaultJournalMaxAge = 14 * 24 * time.Hour

// PruneJournals removes the journals in dir not written to for longer
// than maxAge, with the partial file of each download, and returns how many
// it removed. A journal is written to at each block, so one that old
// belongs to a transfer given up long ago.
func PruneJournals(dir string, maxAge time.Duration, now time.Time) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("journals: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".journal") {
			continue
		}
		fi, err := e.Info()
		if err != nil || now.Sub(fi.ModTime()) <= maxAge {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if j := loadJournal(path); j != nil {
			j.close()
			if j.hdr.Op == "download" && filepath.IsAbs(j.hdr.Path) {
				os.Remove(PartPath(j.hdr.Path))
			}
		}
		if err := os.Remove(path); err == nil {
			n++
		}
	}
	return n, nil
}

// pruneJournals prunes the client's journal folder before a transfer.
// Failing to is not the transfer's failure.
func (c *Client) pruneJournals() {
	if c.opts.JournalDir == "" || c.opts.JournalMaxAge < 0 {
		return
	}
	PruneJournals(c.opts.JournalDir, c.opts.JournalMaxAge, time.Now())
}
