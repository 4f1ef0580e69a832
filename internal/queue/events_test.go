package queue_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/queue"
)

// event is the i-th test event: its number, then filler up to size bytes
// (a progress message with a small JPEG preview is a few tens of KB).
func event(i, size int) []byte {
	b := []byte(fmt.Sprintf(`{"step":%d,"preview":"`, i))
	b = append(b, bytes.Repeat([]byte{'A' + byte(i%26)}, max(size-len(b)-2, 0))...)
	return append(b, '"', '}')
}

// publishing is a Processor that publishes n events of size bytes, then
// returns {}.
func publishing(q *queue.Queue, n, size int) queue.Processor {
	return func(ctx context.Context, job *queue.Job, log queue.LogFunc) (json.RawMessage, error) {
		for i := range n {
			q.Publish(ctx, job.ID, event(i, size))
		}
		return json.RawMessage(`{}`), nil
	}
}

// receiveAll reads events until the channel closes and checks they are
// the n events of size bytes, in order.
func receiveAll(t *testing.T, events <-chan []byte, n, size int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for i := 0; ; i++ {
		select {
		case ev, open := <-events:
			if !open {
				if i != n {
					t.Fatalf("channel closed after %d events, want %d", i, n)
				}
				return
			}
			if i >= n || !bytes.Equal(ev, event(i, size)) {
				t.Fatalf("event %d: %.40s… (%d bytes), want event %d", i, ev, len(ev), i)
			}
		case <-timeout:
			t.Fatalf("got %d events of %d, and the channel is still open", i, n)
		}
	}
}

// TestLiveEventsInProcess: every subscriber of a job gets every event
// published after it subscribed, in order, and its channel closes once
// the job completed.
func TestLiveEventsInProcess(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	const n, size = 40, 20 << 10
	first, unsubscribe1, err := q.Subscribe(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	defer unsubscribe1()
	second, unsubscribe2, err := q.Subscribe(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	defer unsubscribe2()
	other, unsubscribeOther, err := q.Subscribe(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	defer unsubscribeOther()
	q.Start(publishing(q, n, size))
	submit(t, q, queue.SubmitRequest{ID: "job"})
	receiveAll(t, first, n, size)
	receiveAll(t, second, n, size)
	select {
	case ev := <-other:
		t.Fatalf("a subscriber of another job got %.40s", ev)
	default:
	}
}

// TestLiveEventsDropForSlowSubscribers: a subscriber that does not read
// does not block the publisher; it keeps the oldest events its buffer
// holds, and still sees the end.
func TestLiveEventsDropForSlowSubscribers(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	events, unsubscribe, err := q.Subscribe(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	defer unsubscribe()
	const n = 1000 // far more than a subscription holds
	q.Start(publishing(q, n, 16))
	submit(t, q, queue.SubmitRequest{ID: "job"})
	waitStatus(t, q, "job", queue.StatusCompleted) // the publisher was never blocked
	got := 0
	for ev := range events {
		if !bytes.Equal(ev, event(got, 16)) {
			t.Fatalf("event %d: %s", got, ev)
		}
		got++
	}
	if got == 0 || got >= n {
		t.Fatalf("kept %d of %d events", got, n)
	}
}

// TestLiveEventsUnsubscribe: unsubscribing, or ending the subscription's
// context, closes the channel and stops delivery.
func TestLiveEventsUnsubscribe(t *testing.T) {
	q := openQueue(t, filepath.Join(t.TempDir(), "q.db"), queue.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	byCtx, _, err := q.Subscribe(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	byFunc, unsubscribe, err := q.Subscribe(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	q.Publish(context.Background(), "job", []byte("one"))
	cancel()
	unsubscribe()
	unsubscribe() // idempotent
	for name, ch := range map[string]<-chan []byte{"context": byCtx, "unsubscribe": byFunc} {
		var got []string
		for ev := range ch { // closes, or the test times out
			got = append(got, string(ev))
		}
		if fmt.Sprint(got) != "[one]" {
			t.Fatalf("%s: events %v", name, got)
		}
	}
	q.Publish(context.Background(), "job", []byte("after")) // no subscriber left: no panic
	if _, _, err := q.Subscribe(ctx, "job"); err == nil {
		t.Fatal("subscribe with an ended context succeeded")
	}
}

// TestRedisLiveEventsAcrossProcesses: an API process subscribes and
// submits; a worker process runs the job and publishes; every event
// arrives in order and the subscription closes when the job completed.
func TestRedisLiveEventsAcrossProcesses(t *testing.T) {
	url := startRedis(t)
	api := openRedisQueue(t, url, "api", queue.Options{})
	worker := openRedisQueue(t, url, "gpu", queue.Options{})
	const n, size = 40, 20 << 10
	events, unsubscribe, err := api.Subscribe(context.Background(), "job")
	if err != nil {
		t.Fatal(err)
	}
	defer unsubscribe()
	worker.Start(publishing(worker, n, size))
	submit(t, api, queue.SubmitRequest{ID: "job"})
	receiveAll(t, events, n, size)
	if j := waitStatus(t, api, "job", queue.StatusCompleted); j.Failure != nil {
		t.Fatalf("job failed: %+v", j.Failure)
	}

	// A subscription ended by its context closes too.
	ctx, cancel := context.WithCancel(context.Background())
	ch, _, err := api.Subscribe(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range ch {
		t.Fatal("event on an ended subscription")
	}
}
