package refserver_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stepkit/stepkit/internal/reliability"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/spec"
)

// smallDisk mounts a file system of kind "tmpfs" or "ext4" (an image
// without a journal on a loop device) of size bytes for the test and
// returns its folder. It needs root on Linux: elsewhere the test is
// skipped with the reason, except under CI=true, where it fails.
func smallDisk(t *testing.T, kind, size string) string {
	t.Helper()
	why := ""
	switch {
	case runtime.GOOS != "linux":
		why = "mounting a small file system needs Linux"
	case os.Geteuid() != 0:
		why = "mounting a small file system needs root"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
	dir := t.TempDir()
	mount := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir)
	if kind == "ext4" {
		img := filepath.Join(t.TempDir(), "disk.ext4")
		for _, args := range [][]string{{"truncate", "-s", size, img}, {"mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-N", "64", img}} {
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", args[0], err, out)
			}
		}
		mount = exec.Command("mount", "-o", "loop", img, dir)
	}
	if out, err := mount.CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", kind, err, out)
	}
	// Registered after TempDir's removal, so run before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	return dir
}

// fill writes a file in dir until the disk is full and returns its name.
func fill(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return name
		}
	}
}

// entries lists a folder, empty when it does not exist.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestFullDisk runs the server on a 4 MiB file system: a FILE SAVE the
// disk cannot hold is refused at once with 507 and leaves nothing; idle
// uploads give their room to a new one on a full disk; an UPLOAD that
// meets the full disk is answered 507 and keeps its blocks for a resume;
// a DATA SAVE on a full disk is answered 507 and leaves no partial
// document; and all works again once there is room.
//
// It runs on tmpfs, where the server keeps a ledger of the room uploads
// were promised, and on ext4, where it reserves with fallocate.
func TestFullDisk(t *testing.T) {
	for _, kind := range []string{"tmpfs", "ext4"} {
		t.Run(kind, func(t *testing.T) { fullDisk(t, kind) })
	}
}

func fullDisk(t *testing.T, kind string) {
	disk := smallDisk(t, kind, "4M")
	root := filepath.Join(disk, "root")
	var clock atomicTime
	clock.Store(time.Unix(1_700_000_000, 0))
	addr, _ := refserver.StartTest(t, refserver.Config{Root: root, Now: clock.Load})
	c := dial(t, addr)
	c.login("disk")
	user := filepath.Join(root, "tmp", "disk")

	// Larger than the disk: refused at once, nothing left.
	r := c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "huge", "size", 8<<20))
	wantStatus(t, r, 507)
	wantOpType(t, r, spec.OpSave, spec.TypeFile)
	if left := entries(t, user); len(left) != 0 {
		t.Fatalf("a refused FILE SAVE left %v", left)
	}
	small := pattern(100_000, 1)
	c.upload("small", small)
	if got := c.download("small"); string(got) != string(small) {
		t.Fatal("small file differs")
	}

	// An upload abandoned after two blocks holds 3 MiB: a new upload
	// that does not fit waits only until it has been idle for the
	// full-disk age, not for the daily sweep.
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "big", "size", 3<<20)), 200)
	for i := 0; i < 2; i++ {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "big", "block_index", i)
		m.Binary = pattern(spec.DefaultBlockSize, 2)
		wantStatus(t, c.do(m), 200)
	}
	clock.Store(clock.Load().Add(time.Minute))
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "next", "size", 1<<20+1<<19)), 507)
	clock.Store(clock.Load().Add(refserver.DefaultFullDiskUploadMaxAge))
	next := pattern(1<<20+1<<19, 3)
	c.upload("next", next)
	m := c.authed(spec.OpUpload, spec.TypeFile, "key", "big", "block_index", 2)
	m.Binary = pattern(spec.DefaultBlockSize, 2)
	wantStatus(t, c.do(m), 408) // the idle upload was removed

	// An upload that meets the full disk (here: when it completes) is
	// answered 507 and keeps its blocks: once there is room, its last
	// block alone completes it.
	late := pattern(3*spec.DefaultBlockSize, 4)
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeFile, "key", "late", "size", len(late))), 200)
	block := func(i int) *spec.Message {
		m := c.authed(spec.OpUpload, spec.TypeFile, "key", "late", "block_index", i)
		m.Binary = late[i*spec.DefaultBlockSize : (i+1)*spec.DefaultBlockSize]
		return m
	}
	wantStatus(t, c.do(block(0)), 200)
	wantStatus(t, c.do(block(1)), 200)
	filler := fill(t, disk)
	r = c.do(block(2))
	wantStatus(t, r, 507)
	wantOpType(t, r, spec.OpUpload, spec.TypeFile)

	// DATA SAVE on the full disk: 507, no partial document.
	r = c.do(c.authed(spec.OpSave, spec.TypeData, "key", "doc", "pad", strings.Repeat("x", 8000)))
	wantStatus(t, r, 507)
	wantOpType(t, r, spec.OpSave, spec.TypeData)
	if left := entries(t, filepath.Join(root, "data", "disk")); len(left) != 0 {
		t.Fatalf("a DATA SAVE on a full disk left %v", left)
	}
	if left := entries(t, filepath.Join(root, "tmp", ".stage")); len(left) != 0 {
		t.Fatalf("staging files left: %v", left)
	}
	wantStatus(t, c.do(c.authed(spec.OpGet, spec.TypeData, "key", "doc")), 404)

	// Room again: the upload resumes with its last block, and new
	// requests pass.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	r = c.do(block(2))
	wantStatus(t, r, 200)
	if sum, _ := r.MD5(); sum != md5hex(late) {
		t.Fatalf("resumed upload md5 %s, want %s", sum, md5hex(late))
	}
	if got := c.download("late"); string(got) != string(late) {
		t.Fatal("resumed file differs")
	}
	wantStatus(t, c.do(c.authed(spec.OpSave, spec.TypeData, "key", "doc")), 200)
	if got := c.download("next"); string(got) != string(next) {
		t.Fatal("file uploaded on a full disk differs")
	}
	usable(t, dial(t, addr))

	const lost = "nothing: every file accepted was downloaded intact"
	for _, row := range []reliability.Row{
		{Input: "FILE SAVE of 8 MiB on a 4 MiB file system", Outcome: "507 at once, its space never taken, nothing left on disk"},
		{Input: "FILE SAVE that fits only if an upload idle for 10 minutes gives its room", Outcome: "507 while the idle upload is younger, 200 once it is older (the idle upload removed)"},
		{Input: "the last block of an upload on a full disk", Outcome: "507; its blocks kept; the same block alone completed it once there was room"},
		{Input: "DATA SAVE on a full disk", Outcome: "507, no partial document, no staging file left"},
	} {
		row.Area, row.Times, row.Lost, row.Test = "server", 1, lost, "TestFullDisk"
		row.Input += " (" + kind + ")"
		reliability.Record(t, row)
	}
}
