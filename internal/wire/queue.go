package wire

import (
	"encoding/json"
	"time"
)

// Queue status values. A failed or cancelled request is still COMPLETED,
// with Error and ErrorType set; clients know no other values.
const (
	StatusInQueue    = "IN_QUEUE"
	StatusInProgress = "IN_PROGRESS"
	StatusCompleted  = "COMPLETED"
)

// Cancel outcomes (bodies of PUT …/cancel).
const (
	CancelRequested  = "CANCELLATION_REQUESTED"
	AlreadyCompleted = "ALREADY_COMPLETED"
	CancelNotFound   = "NOT_FOUND"
)

// Log levels and the source of status log lines.
const (
	LogLevelInfo  = "INFO"
	LogLevelWarn  = "WARN"
	LogLevelError = "ERROR"
	LogLevelDebug = "DEBUG"
	LogSourceUser = "USER"
)

// TimestampLayout is the ISO-8601 layout of log timestamps (UTC, ms).
const TimestampLayout = "2006-01-02T15:04:05.000Z07:00"

// TimeoutTypeUser is the x-fal-request-timeout-type value of a 504 caused
// by the client's own x-fal-request-timeout.
const TimeoutTypeUser = "user"

// Webhook delivery statuses.
const (
	WebhookStatusOK    = "OK"
	WebhookStatusError = "ERROR"
)

// RequestURLs are the absolute URLs of one queued request.
type RequestURLs struct {
	ResponseURL string `json:"response_url"`
	StatusURL   string `json:"status_url"`
	CancelURL   string `json:"cancel_url"`
}

// SubmitResponse is the body of a queue submit. Python reads every URL key
// with data[...], so all of them are always present.
type SubmitResponse struct {
	Status           string `json:"status"`
	RequestID        string `json:"request_id"`
	GatewayRequestID string `json:"gateway_request_id"`
	RequestURLs
	QueuePosition int `json:"queue_position"`
}

// LogEntry is one status log line (fal's RequestLog).
type LogEntry struct {
	Message   string `json:"message"`
	Level     string `json:"level"`
	Source    string `json:"source"`
	Timestamp string `json:"timestamp"`
}

// NewLogEntry formats a log line with an ISO-8601 UTC millisecond timestamp.
func NewLogEntry(t time.Time, level, message string) LogEntry {
	return LogEntry{Message: message, Level: level, Source: LogSourceUser, Timestamp: t.UTC().Format(TimestampLayout)}
}

// StatusMetrics is the metrics object of a status body; it encodes as {}
// until the request has finished.
type StatusMetrics struct {
	InferenceTime *float64 `json:"inference_time,omitempty"`
}

// Status is the body of GET …/status and of each status-stream event.
//
// QueuePosition is present only while IN_QUEUE (Python raises KeyError
// without it). Logs is always present: a list when logs were requested,
// otherwise null (Python raises KeyError without the key).
type Status struct {
	Status    string `json:"status"`
	RequestID string `json:"request_id"`
	RequestURLs
	QueuePosition *int          `json:"queue_position,omitempty"`
	Logs          []LogEntry    `json:"logs"`
	Metrics       StatusMetrics `json:"metrics"`
	Error         string        `json:"error,omitempty"`
	ErrorType     string        `json:"error_type,omitempty"`
}

// CancelResponse is the body of PUT …/cancel.
type CancelResponse struct {
	Status string `json:"status"`
}

// WebhookBody is what the server POSTs to a request's fal_webhook URL.
type WebhookBody struct {
	RequestID        string          `json:"request_id"`
	GatewayRequestID string          `json:"gateway_request_id"`
	Status           string          `json:"status"`
	Payload          json.RawMessage `json:"payload"`
	Error            *string         `json:"error"`
}

// UploadInitiateRequest is the body of POST /storage/upload/initiate.
type UploadInitiateRequest struct {
	ContentType string `json:"content_type"`
	FileName    string `json:"file_name"`
}

// UploadInitiateResponse tells the client where to PUT the bytes and where
// the file will be served.
type UploadInitiateResponse struct {
	UploadURL string `json:"upload_url"`
	FileURL   string `json:"file_url"`
}
