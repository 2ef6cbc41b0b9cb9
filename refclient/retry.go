package refclient

import (
	"context"
	"time"

	"github.com/stepkit/stepkit/spec"
)

// Defaults of the rate-limit retries.
const (
	DefaultRateLimitRetries = 5
	DefaultRateLimitBackoff = 250 * time.Millisecond
	MaxRateLimitBackoff     = 8 * time.Second
)

// backoff is the wait before retry number retry (from 0).
func (c *Client) backoff(retry int) time.Duration {
	d := c.opts.RateLimitBackoff
	for i := 0; i < retry && d < MaxRateLimitBackoff; i++ {
		d *= 2
	}
	return min(d, MaxRateLimitBackoff)
}

// retryRateLimited reports whether err is a 429 that may be retried as
// retry number retry, after waiting for it. It returns false at once when
// ctx ends.
func (c *Client) retryRateLimited(ctx context.Context, err error, retry int) bool {
	if !IsStatus(err, spec.StatusTooManyRequests) || retry >= c.opts.RateLimitRetries || c.Broken() != nil {
		return false
	}
	t := time.NewTimer(c.backoff(retry))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// retryTransfer runs a transfer that resumes from its journal until it
// ends other than by a 429, or until RateLimitRetries attempts in a row
// moved no block. Without a journal a transfer is not retried: it would
// start over.
func retryTransfer[R any](c *Client, ctx context.Context, o *TransferOptions, run func(o *TransferOptions) (*R, int64, error)) (*R, error) {
	res, moved, err := run(o)
	if c.opts.JournalDir == "" {
		return res, err
	}
	again := *o
	again.Restart = false
	for retry := 0; ; {
		if moved > 0 {
			retry = 0 // it made progress: the limit is a pace, not a refusal
		}
		if !c.retryRateLimited(ctx, err, retry) {
			return res, err
		}
		retry++
		res, moved, err = run(&again)
	}
}
