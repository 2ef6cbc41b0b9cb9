package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/stepkit/stepkit/refclient"
	"github.com/stepkit/stepkit/refserver"
	"github.com/stepkit/stepkit/refserver/storage/s3/weedtest"
	"github.com/stepkit/stepkit/refserver/storage/storagetest"
)

// BenchmarkTransfer256MiB uploads and downloads one 256 MiB file through
// a server on the local folder and through a server on SeaweedFS, in the
// same run, with the same client settings, and reports each rate and the
// ratios S3 / local (x-local-upload, x-local-download). It also reports
// the store's own limit, measured in the same run: one PUT of the 256 MiB
// straight to SeaweedFS and one GET of it (store-put-MB/s,
// store-get-MB/s), and the upload's rate against that PUT (x-store-put).
// The store's rates are sampled before the transfers and after them, and
// averaged. It also measures the store's multipart upload of the same bytes in parts
// of 8 MiB, two on their way at a time, as a server gathering blocks writes
// them (store-multipart-MB/s, and x-store-multipart for the upload).
//
//	go test ./refserver/storage/s3 -run '^$' -bench Transfer256MiB -benchtime 1x
func BenchmarkTransfer256MiB(b *testing.B) {
	const size = 256 << 20
	w := weedtest.Start(b)
	data := storagetest.Pattern(size, 1)
	for _, o := range []refclient.Options{{}, {Conns: 4}} {
		b.Run(fmt.Sprintf("conns%d", max(o.Conns, 1)), func(b *testing.B) {
			local, _ := refserver.StartTest(b, refserver.Config{})
			remote, _ := refserver.StartTest(b, refserver.Config{Storage: w.Open(b, fmt.Sprintf("bench-%d/", max(o.Conns, 1)))})
			var up, down [2]time.Duration
			// The store's own rates are sampled before the transfers and
			// after them, and averaged: a shared machine's load moves
			// meanwhile.
			put0, get0 := storeRates(b, w, data)
			mp0 := storeMultipartRate(b, w, data)
			for i := 0; b.Loop(); i++ {
				for j, addr := range []string{local, remote} {
					u, d := transfer(b, addr, o, fmt.Sprintf("f%d", i), data)
					up[j] += u
					down[j] += d
				}
			}
			put, get := storeRates(b, w, data)
			mp := storeMultipartRate(b, w, data)
			put, get, mp = (put+put0)/2, (get+get0)/2, (mp+mp0)/2
			rate := func(d time.Duration) float64 { return float64(b.N) * size / d.Seconds() / 1e6 }
			b.ReportMetric(put/1e6, "store-put-MB/s")
			b.ReportMetric(get/1e6, "store-get-MB/s")
			b.ReportMetric(rate(up[1])*1e6/put, "x-store-put")
			b.ReportMetric(mp/1e6, "store-multipart-MB/s")
			b.ReportMetric(rate(up[1])*1e6/mp, "x-store-multipart")
			b.ReportMetric(rate(up[0]), "local-up-MB/s")
			b.ReportMetric(rate(up[1]), "s3-up-MB/s")
			b.ReportMetric(rate(down[0]), "local-down-MB/s")
			b.ReportMetric(rate(down[1]), "s3-down-MB/s")
			b.ReportMetric(up[0].Seconds()/up[1].Seconds(), "x-local-upload")
			b.ReportMetric(down[0].Seconds()/down[1].Seconds(), "x-local-download")
		})
	}
}

// transfer uploads data as key, downloads it, checks it and returns the
// time each took.
func transfer(b *testing.B, addr string, o refclient.Options, key string, data []byte) (up, down time.Duration) {
	ctx := context.Background()
	c, err := refclient.Dial(ctx, addr, &o)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx, "bench", ""); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	res, err := c.Upload(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
	up = time.Since(start)
	if err != nil || !res.Verified {
		b.Fatalf("upload to %s: %v", addr, err)
	}
	var got bytes.Buffer
	got.Grow(len(data))
	start = time.Now()
	_, err = c.Download(ctx, key, &got, nil)
	down = time.Since(start)
	if err != nil || !bytes.Equal(got.Bytes(), data) {
		b.Fatalf("download from %s: %v", addr, err)
	}
	if err := c.DeleteFile(ctx, key); err != nil {
		b.Fatal(err)
	}
	return up, down
}

// storeRates puts data as one object straight into the store and gets it
// back, and returns both rates in bytes per second: what the store takes
// and gives when nothing else runs.
func storeRates(b *testing.B, w *weedtest.Server, data []byte) (put, get float64) {
	ctx := context.Background()
	cl := w.Client()
	start := time.Now()
	if _, err := cl.PutObject(ctx, w.Bucket, "bench-raw/object", bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{DisableContentSha256: true, DisableMultipart: true}); err != nil {
		b.Fatal(err)
	}
	put = float64(len(data)) / time.Since(start).Seconds()
	start = time.Now()
	obj, err := cl.GetObject(ctx, w.Bucket, "bench-raw/object", minio.GetObjectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, obj)
	obj.Close()
	if err != nil || n != int64(len(data)) {
		b.Fatalf("get: %d bytes, %v", n, err)
	}
	get = float64(n) / time.Since(start).Seconds()
	cl.RemoveObject(ctx, w.Bucket, "bench-raw/object", minio.RemoveObjectOptions{})
	return put, get
}

// storeMultipartRate writes data straight into the store as a multipart
// upload of 8 MiB parts, two at a time, completes it, and returns the rate
// in bytes per second.
func storeMultipartRate(b *testing.B, w *weedtest.Server, data []byte) float64 {
	ctx := context.Background()
	core := minio.Core{Client: w.Client()}
	const name, part = "bench-raw/multipart", 8 << 20
	start := time.Now()
	id, err := core.NewMultipartUpload(ctx, w.Bucket, name, minio.PutObjectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n := (len(data) + part - 1) / part
	parts := make([]minio.CompletePart, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 2)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			chunk := data[i*part : min((i+1)*part, len(data))]
			p, err := core.PutObjectPart(ctx, w.Bucket, name, id, i+1, bytes.NewReader(chunk), int64(len(chunk)),
				minio.PutObjectPartOptions{DisableContentSha256: true})
			parts[i] = minio.CompletePart{PartNumber: i + 1, ETag: p.ETag}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	if _, err := core.CompleteMultipartUpload(ctx, w.Bucket, name, id, parts, minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	rate := float64(len(data)) / time.Since(start).Seconds()
	w.Client().RemoveObject(ctx, w.Bucket, name, minio.RemoveObjectOptions{})
	return rate
}
