package config

import (
	"encoding/json"
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kleinserve/kleinserve/internal/queue"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func noFiles(string) bool { return false }

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.ModelDir != "models/tiny" || c.DataDir != "./data" || c.Provider != "cpu" ||
		c.PublicURL != "http://127.0.0.1:8080" || c.Workers != 1 || c.Retention != 24*time.Hour ||
		c.ORTLib != "" || len(c.Keys) != 0 || c.ShutdownGrace != 30*time.Second || c.MaxBodyBytes != 16<<20 {
		t.Fatalf("defaults %+v", c)
	}
	c, _ = Load(nil, env(nil), func(p string) bool { return p == DefaultORTLib })
	if c.ORTLib != DefaultORTLib {
		t.Fatalf("ORT default %q", c.ORTLib)
	}
}

func TestEnvAndFlagPrecedence(t *testing.T) {
	e := env(map[string]string{
		"KLEINSERVE_ADDR": "0.0.0.0:9000", "KLEINSERVE_KEYS": "a, b,,c", "KLEINSERVE_WORKERS": "3",
		"KLEINSERVE_PROVIDER": "cuda", "KLEINSERVE_RETENTION": "2h", "KLEINSERVE_ORT_LIB": "/opt/ort.so",
		"KLEINSERVE_DEVICE_ID": "1", "KLEINSERVE_MAX_QUEUE": "7",
	})
	c, err := Load([]string{"-workers", "2", "-public-url", "https://gpu.example.com/"}, e, noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "0.0.0.0:9000" || c.Workers != 2 || c.Provider != "cuda" || c.Retention != 2*time.Hour ||
		c.ORTLib != "/opt/ort.so" || c.DeviceID != 1 || c.MaxQueue != 7 || c.PublicURL != "https://gpu.example.com" {
		t.Fatalf("config %+v", c)
	}
	if strings.Join(c.Keys, "|") != "a|b|c" {
		t.Fatalf("keys %q", c.Keys)
	}
	c, _ = Load([]string{"-addr", ":8081"}, env(nil), noFiles)
	if c.PublicURL != "http://127.0.0.1:8081" {
		t.Fatalf("public url for :8081 = %q", c.PublicURL)
	}
}

func TestRedactedHidesKeys(t *testing.T) {
	c, err := Load([]string{"-keys", "secret-key-1,secret-key-2"}, env(nil), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(c.Redacted())
	if strings.Contains(string(raw), "secret-key-") || !strings.Contains(string(raw), "2 configured") {
		t.Fatalf("redacted: %s", raw)
	}
	raw, _ = json.Marshal(c)
	if strings.Contains(string(raw), "secret-key-") {
		t.Fatalf("json of config leaks keys: %s", raw)
	}
}

func TestValidationErrors(t *testing.T) {
	cases := map[string][]string{
		"-addr":          {"-addr", "nonsense"},
		"-provider":      {"-provider", "tpu"},
		"-workers":       {"-workers", "0"},
		"-public-url":    {"-public-url", "ftp://x"},
		"-retention":     {"-retention", "1s"},
		"-max-body":      {"-max-body", "1000"},
		"-log-level":     {"-log-level", "loud"},
		"-max-queue":     {"-max-queue", "-1"},
		"retention":      {"-retention", "forever"},
		"unexpected":     {"stray"},
		"-threads":       {"-threads", "-2"},
		"-preview-every": {"-preview-every", "-1"},
	}
	for want, args := range cases {
		_, err := Load(args, env(nil), noFiles)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v does not mention %q", args, err, want)
		}
	}
	_, err := Load(nil, env(map[string]string{"KLEINSERVE_WORKERS": "many"}), noFiles)
	if err == nil || !strings.Contains(err.Error(), "KLEINSERVE_WORKERS") {
		t.Errorf("bad env: %v", err)
	}
}

func TestHelp(t *testing.T) {
	_, err := Load([]string{"-h"}, env(nil), noFiles)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("want ErrHelp, got %v", err)
	}
	if h := HelpText(); !strings.Contains(h, "-public-url") || !strings.Contains(h, "-ort-lib") {
		t.Fatalf("help text %q", h)
	}
}

func TestRolesAndQueue(t *testing.T) {
	c, err := Load(nil, env(nil), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != RoleAll || c.Queue != QueueBolt || c.SharedQueue() || c.Lease != 30*time.Second || c.WorkerID != "" {
		t.Fatalf("defaults role %q queue %q lease %v", c.Role, c.Queue, c.Lease)
	}
	c, err = Load([]string{"-role", "worker", "-worker-id", "gpu-3", "-lease", "10s"},
		env(map[string]string{"KLEINSERVE_QUEUE": "redis://:s3cret@redis.internal:6379/2"}), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != RoleWorker || !c.SharedQueue() || c.WorkerID != "gpu-3" || c.Lease != 10*time.Second {
		t.Fatalf("worker config %+v", c)
	}
	raw, _ := json.Marshal(c.Redacted())
	if strings.Contains(string(raw), "s3cret") || !strings.Contains(string(raw), "redis.internal:6379") {
		t.Fatalf("queue URL not redacted: %s", raw)
	}
	raw, _ = json.Marshal(c)
	if strings.Contains(string(raw), "s3cret") {
		t.Fatalf("json of config leaks the Redis password: %s", raw)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-role", "gpu"}, "-role"},
		{[]string{"-role", "api"}, "needs a queue that processes share"},
		{[]string{"-role", "worker", "-queue", "bolt"}, "needs a queue that processes share"},
		{[]string{"-queue", "postgres://x"}, "-queue"},
		{[]string{"-queue", "redis:///0"}, "no host"},
		{[]string{"-queue", "redis://h:6379/zero"}, "not a number"},
		{[]string{"-queue", "redis://h:6379", "-lease", "100ms"}, "-lease"},
		{[]string{"-lease", "soon"}, "-lease"},
		{[]string{"-worker-id", "a b"}, "-worker-id"},
	} {
		_, err := Load(tc.args, env(nil), noFiles)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v does not mention %q", tc.args, err, tc.want)
		}
	}
}

func TestEnvVarsNameEveryFlag(t *testing.T) {
	names := strings.Join(EnvVars(), " ")
	for _, want := range []string{"KLEINSERVE_ADDR", "KLEINSERVE_PUBLIC_URL", "KLEINSERVE_ORT_LIB", "KLEINSERVE_ROLE",
		"KLEINSERVE_QUEUE", "KLEINSERVE_WORKER_ID", "KLEINSERVE_LEASE", "KLEINSERVE_SHUTDOWN_GRACE",
		"KLEINSERVE_STORAGE", "KLEINSERVE_S3_ENDPOINT", "KLEINSERVE_S3_REGION", "KLEINSERVE_S3_ACCESS_KEY",
		"KLEINSERVE_S3_SECRET_KEY", "KLEINSERVE_S3_INSECURE", "KLEINSERVE_S3_PATH_STYLE"} {
		if !strings.Contains(" "+names+" ", " "+want+" ") {
			t.Errorf("EnvVars lacks %s: %s", want, names)
		}
	}
	// Every listed variable is read by Load: it is refused or changes the config.
	defaults, _ := Load(nil, env(nil), noFiles)
	for _, name := range EnvVars() {
		c, err := Load(nil, env(map[string]string{name: "7x"}), noFiles)
		if err == nil && reflect.DeepEqual(c, defaults) {
			t.Errorf("%s=7x changed nothing: the variable is not read", name)
		}
	}
}

func TestStorage(t *testing.T) {
	c, err := Load(nil, env(nil), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if b, p := c.S3Location(); c.Storage != StorageLocal || c.SharedStorage() || b != "" || p != "" {
		t.Fatalf("default storage %q (%q, %q)", c.Storage, b, p)
	}

	e := env(map[string]string{
		"KLEINSERVE_STORAGE": "s3://kleinserve-files/prod/eu/", "KLEINSERVE_S3_ENDPOINT": "minio.internal:9000",
		"KLEINSERVE_S3_REGION": "eu-central-1", "KLEINSERVE_S3_ACCESS_KEY": "AKIAEXAMPLEKEYID",
		"KLEINSERVE_S3_SECRET_KEY": "wJalrXUtnFEMIsecretvalue", "KLEINSERVE_S3_INSECURE": "true",
		"KLEINSERVE_S3_PATH_STYLE": "1",
	})
	c, err = Load([]string{"-role", "api", "-queue", "redis://r:6379/0"}, e, noFiles)
	if err != nil {
		t.Fatal(err)
	}
	bucket, prefix := c.S3Location()
	if !c.SharedStorage() || bucket != "kleinserve-files" || prefix != "prod/eu" || c.S3Endpoint != "minio.internal:9000" ||
		c.S3Region != "eu-central-1" || c.S3AccessKey != "AKIAEXAMPLEKEYID" || c.S3SecretKey != "wJalrXUtnFEMIsecretvalue" ||
		!c.S3Insecure || !c.S3PathStyle {
		t.Fatalf("s3 config %+v (%q, %q)", c, bucket, prefix)
	}
	for name, v := range map[string]any{"redacted": c.Redacted(), "config": c} {
		raw, _ := json.Marshal(v)
		if strings.Contains(string(raw), "wJalrXUtnFEMI") || strings.Contains(string(raw), "AKIAEXAMPLE") {
			t.Errorf("%s leaks S3 credentials: %s", name, raw)
		}
	}
	if r := c.Redacted(); r["s3_secret_key"] != "set (redacted)" || r["storage"] != "s3://kleinserve-files/prod/eu/" {
		t.Errorf("redacted %v", r)
	}
	// A flag wins over its variable.
	c, _ = Load([]string{"-s3-insecure=false", "-storage", "s3://other"}, e, noFiles)
	if b, p := c.S3Location(); c.S3Insecure || b != "other" || p != "" {
		t.Fatalf("flags over env: insecure %v, %q %q", c.S3Insecure, b, p)
	}
	// Credentials may come from the AWS chain instead.
	if _, err := Load([]string{"-storage", "s3://my.bucket-1/x"}, env(nil), noFiles); err != nil {
		t.Fatalf("no static credentials: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-storage", "gcs://b"}, "want local or s3://bucket[/prefix]"},
		{[]string{"-storage", "disk"}, "want local or s3://bucket[/prefix]"},
		{[]string{"-storage", "s3://"}, "bad bucket name"},
		{[]string{"-storage", "s3://Bad_Bucket"}, "bad bucket name"},
		{[]string{"-storage", "s3://ab"}, "bad bucket name"},
		{[]string{"-storage", "s3://a..b"}, "bad bucket name"},
		{[]string{"-storage", "s3://192.168.1.1"}, "bad bucket name"},
		{[]string{"-storage", "s3://key:secret@bucket"}, "no credentials"},
		{[]string{"-storage", "s3://bucket:9000"}, "no credentials, port"},
		{[]string{"-storage", "s3://bucket?region=x"}, "query"},
		{[]string{"-storage", "s3://bucket/a//b"}, "bad prefix"},
		{[]string{"-storage", "s3://bucket/../x"}, "bad prefix"},
		{[]string{"-storage", "s3://bucket", "-s3-endpoint", "http://minio:9000"}, "-s3-endpoint"},
		{[]string{"-storage", "s3://bucket", "-s3-endpoint", "minio:9000/path"}, "without a scheme or path"},
		{[]string{"-storage", "s3://bucket", "-s3-endpoint", "minio:0"}, "bad port"},
		{[]string{"-storage", "s3://bucket", "-s3-endpoint", ":9000"}, "no host"},
		{[]string{"-storage", "s3://bucket", "-s3-region", "EU West"}, "-s3-region"},
		{[]string{"-storage", "s3://bucket", "-s3-access-key", "AKIA"}, "go together"},
		{[]string{"-storage", "s3://bucket", "-s3-secret-key", "x"}, "go together"},
		{[]string{"-s3-endpoint", "minio:9000"}, "-s3-endpoint is set but -storage is local"},
		{[]string{"-s3-insecure"}, "-s3-insecure is set but -storage is local"},
		{[]string{"-s3-secret-key", "x"}, "-s3-secret-key is set but -storage is local"},
		{[]string{"-s3-insecure=maybe"}, "-s3-insecure"},
	} {
		_, err := Load(tc.args, env(nil), noFiles)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v does not mention %q", tc.args, err, tc.want)
		}
	}
	// Every problem is reported at once.
	_, err = Load([]string{"-storage", "s3://B", "-s3-region", "?", "-s3-access-key", "a", "-workers", "0"}, env(nil), noFiles)
	for _, want := range []string{"-storage", "-s3-region", "go together", "-workers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("combined error %v lacks %q", err, want)
		}
	}
}

func TestMaxRetries(t *testing.T) {
	c, err := Load(nil, env(nil), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxRetries != queue.DefaultMaxRetries || c.Redacted()["max_retries"] != queue.DefaultMaxRetries {
		t.Fatalf("default max retries %d", c.MaxRetries)
	}
	c, err = Load([]string{"-max-retries", "0"}, env(map[string]string{"KLEINSERVE_MAX_RETRIES": "5"}), noFiles)
	if err != nil || c.MaxRetries != 0 {
		t.Fatalf("flag over env: %d %v", c.MaxRetries, err)
	}
	if c, _ := Load(nil, env(map[string]string{"KLEINSERVE_MAX_RETRIES": "5"}), noFiles); c.MaxRetries != 5 {
		t.Fatalf("env: %d", c.MaxRetries)
	}
	for _, v := range []string{"-1", "11"} {
		_, err := Load([]string{"-max-retries", v}, env(nil), noFiles)
		if err == nil || !strings.Contains(err.Error(), "-max-retries "+v+": want 0..10") {
			t.Errorf("-max-retries %s: %v", v, err)
		}
	}
}

func TestWebhookSecret(t *testing.T) {
	c, err := Load(nil, env(nil), noFiles)
	if err != nil {
		t.Fatal(err)
	}
	if c.WebhookSecret != "" || c.Redacted()["webhook_secret"] != "" {
		t.Fatalf("default webhook secret %q", c.WebhookSecret)
	}
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // 24 bytes
	c, err = Load(nil, env(map[string]string{"KLEINSERVE_WEBHOOK_SECRET": secret}), noFiles)
	if err != nil || c.WebhookSecret != secret {
		t.Fatalf("webhook secret %q %v", c.WebhookSecret, err)
	}
	for name, v := range map[string]any{"redacted": c.Redacted(), "config": c} {
		raw, _ := json.Marshal(v)
		if strings.Contains(string(raw), "MfKQ9r8") {
			t.Errorf("%s leaks the webhook secret: %s", name, raw)
		}
	}
	if r := c.Redacted(); r["webhook_secret"] != "set (redacted)" {
		t.Errorf("redacted %v", r)
	}
	if _, err := Load([]string{"-webhook-secret", "a raw secret of 24 bytes"}, env(nil), noFiles); err != nil {
		t.Errorf("raw secret refused: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-webhook-secret", "whsec_%%%"}, "-webhook-secret: the part after whsec_ is not base64"},
		{[]string{"-webhook-secret", "short"}, "-webhook-secret: the key has 5 bytes, want at least 16"},
		{[]string{"-webhook-secret", "whsec_c2hvcnQ="}, "-webhook-secret: the key has 5 bytes"},
	} {
		_, err := Load(tc.args, env(nil), noFiles)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v does not mention %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "%%%") {
			t.Errorf("%v: the error shows the secret: %v", tc.args, err)
		}
	}
}
