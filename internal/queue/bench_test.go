package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/queue/boltstore"
	"github.com/kleinserve/kleinserve/internal/queue/redisstore"
	"github.com/kleinserve/kleinserve/internal/redistest"
)

// syncModeResult is a result like a sync_mode request's: images data URIs
// of imageBytes of base64 each.
func syncModeResult(images, imageBytes int) json.RawMessage {
	var b strings.Builder
	b.WriteString(`{"images":[`)
	for i := range images {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"url":"data:image/png;base64,%s","width":1024,"height":768,"content_type":"image/png"}`,
			strings.Repeat("iVBO", imageBytes/4))
	}
	b.WriteString(`],"seed":42}`)
	return json.RawMessage(b.String())
}

// completeDirectly stores a completed job with result, as a worker would.
func completeDirectly(b *testing.B, s queue.Store, id string, result json.RawMessage) {
	ctx := context.Background()
	if err := s.Add(ctx, &queue.Job{ID: id, Payload: json.RawMessage(`{"prompt":"p"}`)}, 0); err != nil {
		b.Fatal(err)
	}
	if _, err := s.ClaimNext(ctx, time.Now()); err != nil {
		b.Fatal(err)
	}
	_, err := s.Update(ctx, id, func(j *queue.Job) error {
		j.Status = queue.StatusCompleted
		j.FinishedAt = time.Now()
		j.ExpiresAt = time.Now().Add(time.Hour)
		j.Result = result
		j.Logs = []queue.LogEntry{{Time: time.Now(), Level: "INFO", Message: "Step 28/28"}}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStatusRead: a status read (Read without the result, with the
// logs) of a completed job whose result holds four sync_mode 1024x768
// images (~10 MB) costs the same as one with a tiny result; the full read
// (Get) shows what reading the result would cost.
//
//	go test ./internal/queue -run '^$' -bench StatusRead -benchtime 2s
func BenchmarkStatusRead(b *testing.B) {
	big := syncModeResult(4, 2_500_000)
	tiny := json.RawMessage(`{"images":[],"seed":42}`)
	stores := map[string]func(b *testing.B) queue.Store{
		"bolt": func(b *testing.B) queue.Store {
			s, err := boltstore.Open(context.Background(), filepath.Join(b.TempDir(), "q.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"redis": func(b *testing.B) queue.Store {
			s, err := redisstore.Open(context.Background(), redisstore.Options{URL: redistest.Start(b), Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	for _, backend := range []string{"bolt", "redis"} {
		b.Run(backend, func(b *testing.B) {
			s := stores[backend](b)
			completeDirectly(b, s, "big", big)
			completeDirectly(b, s, "tiny", tiny)
			q, err := queue.Open(s, queue.Options{Describe: describe, Logger: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			ctx := context.Background()
			for _, tc := range []struct {
				name, id string
				read     func(string) (*queue.Job, error)
			}{
				{"status/tiny", "tiny", func(id string) (*queue.Job, error) { return q.Read(ctx, id, queue.PartLogs) }},
				{"status/10MB", "big", func(id string) (*queue.Job, error) { return q.Read(ctx, id, queue.PartLogs) }},
				{"full/tiny", "tiny", func(id string) (*queue.Job, error) { return q.Get(ctx, id) }},
				{"full/10MB", "big", func(id string) (*queue.Job, error) { return q.Get(ctx, id) }},
			} {
				runtime.GC() // the 10 MB result built above is garbage now
				b.Run(tc.name, func(b *testing.B) {
					for b.Loop() {
						j, err := tc.read(tc.id)
						if err != nil || j.Status != queue.StatusCompleted {
							b.Fatalf("%+v %v", j, err)
						}
					}
				})
			}
		})
	}
}
