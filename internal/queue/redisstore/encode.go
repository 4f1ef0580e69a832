package redisstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kleinserve/kleinserve/internal/queue"
)

// Job hash fields. The status fields are written on every update, so a
// cleared one (a failure, a deadline) is cleared in Redis too; the payload
// is written once by Add and the result once at completion.
const (
	fieldPayload = "payload"
	fieldResult  = "result"
)

// statusFields are the fields of the status record, in jobFields order.
var statusFields = []string{
	"id", "endpoint", "priority", "owner", "ephemeral", "status", "queue_key",
	"submitted_at", "started_at", "finished_at", "expires_at", "start_deadline",
	"cancel_requested", "attempts", "crashes", "worker", "failure", "webhook",
}

// readFields are what a status read fetches: the status record and the
// job's dispatch entry.
var readFields = append(append([]string(nil), statusFields...), "stream", "entry")

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("field %s: %w", field, err)
	}
	return t, nil
}

func boolField(b bool) string {
	if b {
		return "1"
	}
	return ""
}

// jobFields encodes a job's status record as HSET field/value pairs.
func jobFields(j *queue.Job) ([]any, error) {
	var failure, webhook []byte
	var err error
	if j.Failure != nil {
		if failure, err = json.Marshal(j.Failure); err != nil {
			return nil, fmt.Errorf("queue: encode failure of %s: %w", j.ID, err)
		}
	}
	if j.Webhook != nil {
		if webhook, err = json.Marshal(j.Webhook); err != nil {
			return nil, fmt.Errorf("queue: encode webhook of %s: %w", j.ID, err)
		}
	}
	values := []string{
		j.ID, j.Endpoint, strconv.Itoa(int(j.Priority)), j.Owner, boolField(j.Ephemeral),
		string(j.Status), string(j.QueueKey),
		formatTime(j.SubmittedAt), formatTime(j.StartedAt), formatTime(j.FinishedAt),
		formatTime(j.ExpiresAt), formatTime(j.StartDeadline),
		boolField(j.CancelRequested), strconv.Itoa(j.Attempts), strconv.Itoa(j.Crashes), j.Worker,
		string(failure), string(webhook),
	}
	out := make([]any, 0, 2*len(values))
	for i, v := range values {
		out = append(out, statusFields[i], v)
	}
	return out, nil
}

// dispatch is a job's stream entry, kept in its hash but not part of Job.
type dispatch struct{ stream, entry string }

// decodeJob decodes a job hash (status fields, and payload and result when
// present) and its log lines.
func decodeJob(h map[string]string, logs []string) (*queue.Job, dispatch, error) {
	j := &queue.Job{
		ID: h["id"], Endpoint: h["endpoint"], Owner: h["owner"], Status: queue.Status(h["status"]),
		Ephemeral: h["ephemeral"] == "1", CancelRequested: h["cancel_requested"] == "1", Worker: h["worker"],
	}
	d := dispatch{stream: h["stream"], entry: h["entry"]}
	var errs []error
	if p := h[fieldPayload]; p != "" {
		j.Payload = json.RawMessage(p)
	}
	if r := h[fieldResult]; r != "" {
		j.Result = json.RawMessage(r)
	}
	if k := h["queue_key"]; k != "" {
		j.QueueKey = []byte(k)
	}
	prio, err := strconv.Atoi(h["priority"])
	errs = append(errs, err)
	j.Priority = queue.Priority(prio)
	for _, f := range []struct {
		name string
		dst  *int
	}{{"attempts", &j.Attempts}, {"crashes", &j.Crashes}} {
		if v := h[f.name]; v != "" {
			*f.dst, err = strconv.Atoi(v)
			errs = append(errs, err)
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{
		{"submitted_at", &j.SubmittedAt}, {"started_at", &j.StartedAt}, {"finished_at", &j.FinishedAt},
		{"expires_at", &j.ExpiresAt}, {"start_deadline", &j.StartDeadline},
	} {
		*f.dst, err = parseTime(f.name, h[f.name])
		errs = append(errs, err)
	}
	if f := h["failure"]; f != "" {
		j.Failure = &queue.Failure{}
		errs = append(errs, json.Unmarshal([]byte(f), j.Failure))
	}
	if w := h["webhook"]; w != "" {
		j.Webhook = &queue.Webhook{}
		errs = append(errs, json.Unmarshal([]byte(w), j.Webhook))
	}
	for _, l := range logs {
		var e queue.LogEntry
		errs = append(errs, json.Unmarshal([]byte(l), &e))
		j.Logs = append(j.Logs, e)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, d, fmt.Errorf("queue: decode job %s: %w", j.ID, err)
	}
	return j, d, nil
}
