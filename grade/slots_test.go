package grade_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stepkit/stepkit/grade"
)

// countedBox counts the boxes open at once across runs.
type countedBox struct {
	grade.Box
	c *boxCounter
}

type boxCounter struct {
	mu        sync.Mutex
	open, max int
}

func (b countedBox) Close() error {
	b.c.mu.Lock()
	b.c.open--
	b.c.mu.Unlock()
	return b.Box.Close()
}

func (c *boxCounter) newBox(ctx context.Context, cfg grade.BoxConfig) (grade.Box, error) {
	b, err := grade.NewHostBox(ctx, cfg)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.open++
	c.max = max(c.max, c.open)
	c.mu.Unlock()
	return countedBox{b, c}, nil
}

// TestSharedSlots runs two classes side by side, each allowed 3 jobs, on
// 2 shared slots: never more than 2 submissions are graded at once, both
// slots are used, and each class gets the verdicts it gets alone.
func TestSharedSlots(t *testing.T) {
	_, subs, students := fixtureClass(t, false)
	subs, students = subs[1:4], students[1:4] // python, defect, single
	counter := &boxCounter{}
	slots := make(chan struct{}, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	classes := make([]*grade.Class, 2)
	errs := make([]error, 2)
	for i := range classes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := fixtureOptions(subs, 3, filepath.Join(t.TempDir(), "class"), counter.newBox)
			o.Slots = slots
			o.Notice = func(string) {}
			classes[i], errs[i] = grade.Run(ctx, o)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("class %d: %v", i, err)
		}
		for j, r := range classes[i].Results {
			if r.Verdict != students[j].verdict {
				t.Errorf("class %d, %s: verdict %s, want %s", i, r.ID, r.Verdict, students[j].verdict)
			}
		}
	}
	if counter.max != 2 {
		t.Errorf("at most %d submissions graded at once on 2 shared slots, want 2", counter.max)
	}
	if len(slots) != 0 {
		t.Errorf("%d slots still held after both runs", len(slots))
	}
}
