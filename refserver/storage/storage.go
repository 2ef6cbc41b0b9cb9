// Package storage defines what the STEP server keeps and how it asks for
// it: DATA documents, completed files and uploads in progress, each named
// by a user and a key. A Backend is where they live; the server's handlers
// speak only to this interface, never to a folder or a bucket.
//
// Two backends implement it: package local (a folder on one disk, the
// default) and package s3 (an S3-compatible object store shared by several
// servers). Package storagetest is the contract both pass.
package storage

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors of a Backend, mapped to statuses by the server.
var (
	ErrNotFound   = errors.New("not found")
	ErrInProgress = errors.New("upload in progress")
	ErrExists     = errors.New("key exists")
	// ErrBlockLen is returned by WriteBlock for a block of the wrong length.
	ErrBlockLen = errors.New("block length does not match the plan")
	// ErrNoSpace is wrapped by the errors of a Backend that has no room
	// for what it was asked to store (a local backend may return the
	// system's ENOSPC instead, which the server treats alike).
	ErrNoSpace = errors.New("no space left for it")
)

// FileMeta describes a completed file. A Backend makes a new value each
// time a key's file changes, so a pointer identifies one version of it.
type FileMeta struct {
	Size    int64  `json:"size"`
	MD5     string `json:"md5"`
	ModTime int64  `json:"mtime_ns"`
}

// Plan is the plan of an upload in progress.
type Plan struct {
	Size       int64 `json:"size"`
	BlockSize  int64 `json:"block_size"`
	TotalBlock int64 `json:"total_block"`
}

// Upload is an upload in progress, as returned by Backend.Upload. It is
// valid while its key's lock is held.
type Upload interface {
	Plan() Plan
}

// File is a completed file opened for reading blocks.
type File interface {
	io.ReaderAt
	io.Closer
}

// Swept is an abandoned upload removed by Backend.Sweep.
type Swept struct {
	User, Key string
	Size      int64 // its planned size
}

// Backend stores the documents, files and uploads of every user. User and
// key names have passed CheckName. Methods documented "locked" are called
// with the key's lock (Lock) held; the others take it when they need it.
type Backend interface {
	// Lock locks user's key against the other requests of this server and
	// returns the unlock function. Backends shared by several servers make
	// their writes safe across servers by other means.
	Lock(user, key string) (unlock func())

	// SaveData stores a DATA document unless the key exists (ErrExists).
	// Locked.
	SaveData(user, key string, doc []byte) error
	// Data returns a DATA document, or ErrNotFound.
	Data(user, key string) ([]byte, error)
	// DeleteData removes a DATA document and returns its size. Locked.
	DeleteData(user, key string) (int64, error)

	// Completed returns the metadata of a completed file, or ErrNotFound.
	// A backend shared by several servers may answer from what this
	// server saw a moment ago (DOWNLOAD asks for every block).
	Completed(user, key string) (*FileMeta, error)
	// CompletedLocked is Completed for a caller holding the key's lock,
	// always as the storage has it now.
	CompletedLocked(user, key string) (*FileMeta, error)
	// OpenCompleted opens the completed file m describes for reading.
	OpenCompleted(user, key string, m *FileMeta) (File, error)
	// DeleteFile removes a completed file and returns its size, or removes
	// an upload in progress and returns ErrInProgress with its planned
	// size. Locked.
	DeleteFile(user, key string) (int64, error)
	// CreateEmpty stores an empty completed file; ErrExists if another
	// server created the key at the same time. Locked.
	CreateEmpty(user, key string) (*FileMeta, error)

	// Upload returns the upload in progress of key, or ErrNotFound.
	// Locked.
	Upload(user, key string) (Upload, error)
	// PlanUpload starts (or restarts) an upload of size bytes in blocks of
	// blockSize. It returns its plan and the size of the plan it replaced.
	// A backend that can reserve the file's space does so here, and fails
	// with ErrNoSpace (or ENOSPC), leaving nothing behind, when it cannot.
	// Locked; the caller has checked that the key is not completed. A
	// shared backend returns ErrExists when another server planned the key
	// at the same time.
	PlanUpload(user, key string, size, blockSize int64, now time.Time) (Plan, int64, error)
	// DropUpload removes an upload in progress. Locked.
	DropUpload(user, key string, u Upload) error
	// WriteBlock stores block index of u (ErrBlockLen if its length does
	// not match the plan; ErrNotFound if u was removed or replaced since
	// Upload returned it). When it was the last missing block, the file is
	// completed and its metadata returned. Called without the key's lock,
	// which it takes as it needs, so that a backend may store blocks of
	// one upload from several connections at once; the index is in range.
	WriteBlock(user, key string, u Upload, index int64, block []byte, now time.Time) (*FileMeta, error)

	// Usage is the number of bytes user stores: completed files, planned
	// uploads and DATA documents.
	Usage(user string) (int64, error)
	// Sweep removes the uploads that received nothing since before cutoff.
	Sweep(cutoff time.Time) []Swept

	Close() error
}

// BatchWriter is a Backend that can record the arrival of several blocks
// of an upload with one write. WriteBlockBatched stores a block as
// WriteBlock does but may hold back the record that it arrived (and, when
// every block is fsynced, the fsync); CommitBlocks writes what was held
// back for u. A block's 200 is its acknowledgement: a client that resumes
// never sends it again. So the server calls CommitBlocks before any
// acknowledgement of a block stored by WriteBlockBatched leaves, and a
// crash never forgets an acknowledged block; a crash before the commit
// forgets only blocks nobody was told had arrived. Both are locked;
// CommitBlocks of an upload completed or removed since does nothing.
type BatchWriter interface {
	WriteBlockBatched(user, key string, u Upload, index int64, block []byte, now time.Time) (*FileMeta, error)
	CommitBlocks(user, key string, u Upload) error
}

// RunWriter is implemented by backends that store several blocks of one
// upload in one write: the server gives them the blocks a client
// pipelined, so that one request to the storage acknowledges them all.
type RunWriter interface {
	// WriteBlocks is WriteBlock for blocks index[j] = blocks[j], each
	// index in range and given once.
	WriteBlocks(user, key string, u Upload, index []int64, blocks [][]byte, now time.Time) (*FileMeta, error)
}

// Gatherer is implemented by backends that store an upload faster when
// they may gather its blocks into larger writes (an object store's
// multipart parts) before acknowledging them. The server gathers only the
// blocks of clients that keep at least UploadWindow bytes in flight on
// their connection (STEP.md EXT-8): the rest of a part is then on its way.
type Gatherer interface {
	// UploadWindow is the bytes a client keeps in flight for its blocks
	// to be gathered; 0 when the backend gathers none.
	UploadWindow() int64
	// WriteBlocksGathered is RunWriter.WriteBlocks for blocks that may
	// wait for others of their upload, from this call or later ones, so
	// that they are stored together. It returns once they are stored
	// (with those others, or, after a while without them, alone), so
	// acknowledged blocks are in the store as with WriteBlocks.
	WriteBlocksGathered(user, key string, u Upload, index []int64, blocks [][]byte, now time.Time) (*FileMeta, error)
}

// Shared is implemented by backends that several servers may use at once.
// A server then counts quotas from the storage (Backend.Usage) at each
// request that needs them, not from what it accepted itself.
type Shared interface {
	Shared() bool
}

// MaxNameLen is the longest key or user name, in bytes: the longest file
// name most file systems accept.
const MaxNameLen = 255

// ErrBadName is wrapped by every refusal of a key or user name.
var ErrBadName = errors.New("unusable name")

// CheckName reports whether s can name a key or a user: a plain file name.
// It refuses the empty string, names over MaxNameLen bytes, ".", "..", and
// names holding '/', '\\', NUL or another control character. Anything else
// (spaces, non-ASCII text) is accepted.
func CheckName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadName, len(s), MaxNameLen)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %q names a folder", ErrBadName, s)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '/' || c == '\\':
			return fmt.Errorf("%w: holds a path separator", ErrBadName)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%w: holds control character %#02x", ErrBadName, c)
		}
	}
	return nil
}
