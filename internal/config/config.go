// Package config reads the server's typed configuration once, from flags
// with environment-variable equivalents (KLEINSERVE_<FLAG>, dashes as
// underscores; a flag on the command line wins), validates it and renders it
// for the start-up log with secrets redacted.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kleinserve/kleinserve/internal/lora"
	"github.com/kleinserve/kleinserve/internal/netguard"
	"github.com/kleinserve/kleinserve/internal/queue"
	"github.com/kleinserve/kleinserve/internal/sampler"
)

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "KLEINSERVE_"

// DefaultORTLib is where scripts/install_ort.sh puts ONNX Runtime.
const DefaultORTLib = ".ort/lib/libonnxruntime.so"

// Process roles (-role).
const (
	// RoleAll serves the API and generates in one process.
	RoleAll = "all"
	// RoleAPI serves the API and queues requests; it loads no model.
	RoleAPI = "api"
	// RoleWorker loads the model and runs queued requests; it serves only
	// /healthz, /readyz and /metrics.
	RoleWorker = "worker"
)

// QueueBolt is the -queue value of the embedded single-process queue.
const QueueBolt = "bolt"

// StorageLocal is the -storage value of the local-disk file store.
const StorageLocal = "local"

// Config is the whole server configuration.
type Config struct {
	// Addr is the listen address (host:port).
	Addr string `json:"addr"`
	// ModelDir is the model directory to load (model.json and graphs).
	ModelDir string `json:"model_dir"`
	// DataDir holds the queue database and stored files.
	DataDir string `json:"data_dir"`
	// Provider is the ONNX Runtime execution provider: cpu or cuda.
	Provider string `json:"provider"`
	// DeviceID is the CUDA device ordinal.
	DeviceID int `json:"device_id"`
	// Threads is the intra-op thread count for CPU (0: runtime default).
	Threads int `json:"threads"`
	// Noise is how a seed becomes initial noise (sampler.NoiseSources).
	Noise string `json:"noise"`
	// Keys are the accepted API keys; empty means no authentication.
	Keys []string `json:"-"`
	// PublicURL is the external base URL used in every returned URL.
	PublicURL string `json:"public_url"`
	// Workers is the number of requests generated at once.
	Workers int `json:"workers"`
	// MaxQueue bounds waiting requests (0: unbounded).
	MaxQueue int `json:"max_queue"`
	// Retention is how long results and files are kept.
	Retention time.Duration `json:"-"`
	// ORTLib is the path of libonnxruntime.so ("" lets the loader search
	// the system paths).
	ORTLib string `json:"ort_lib"`
	// ShutdownGrace is how long running requests may finish at shutdown
	// before they are interrupted and requeued.
	ShutdownGrace time.Duration `json:"-"`
	// MaxBodyBytes bounds JSON request bodies.
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// MaxUploadBytes bounds one uploaded file.
	MaxUploadBytes int64 `json:"max_upload_bytes"`
	// MaxConnsPerIP bounds the open connections of one client address
	// (0: no limit).
	MaxConnsPerIP int `json:"max_conns_per_ip"`
	// PrivateFiles requires an API key to download stored files.
	PrivateFiles bool `json:"private_files"`
	// LoRADir holds operators' LoRA files, named in requests ("" : none).
	LoRADir string `json:"lora_dir"`
	// LoRACacheBytes bounds the on-disk cache of downloaded LoRA files.
	LoRACacheBytes int64 `json:"lora_cache_bytes"`
	// LoRAMaxBytes bounds one LoRA file.
	LoRAMaxBytes int64 `json:"lora_max_bytes"`
	// AllowPrivateURLs lets outbound requests (webhooks, reference images,
	// LoRA files) reach loopback and private addresses.
	AllowPrivateURLs bool `json:"allow_private_urls"`
	// AllowURLs are CIDRs and host names outbound requests may always
	// reach, whatever their address class.
	AllowURLs []string `json:"allow_urls"`
	// PreviewEvery is the step interval of previews on /stream (0: none).
	PreviewEvery int `json:"preview_every"`
	// LogLevel is the zerolog level: debug, info, warn, error.
	LogLevel string `json:"log_level"`
	// Role is what this process does: all, api or worker.
	Role string `json:"role"`
	// Queue is the queue backend: "bolt" (a file in DataDir, one process)
	// or a Redis URL shared by API and worker processes. It may hold a
	// password, so it is logged redacted.
	Queue string `json:"-"`
	// WorkerID names this process in the shared queue (default: host name).
	WorkerID string `json:"worker_id"`
	// Lease is how long a worker may go without a heartbeat before its job
	// is redelivered to another (Redis queue).
	Lease time.Duration `json:"-"`
	// MaxRetries is how many times a job is run again after its process
	// died while running it; one more crash fails it.
	MaxRetries int `json:"max_retries"`
	// WebhookSecret signs webhook deliveries (Standard Webhooks); empty:
	// unsigned. Logged redacted.
	WebhookSecret string `json:"-"`
	// Storage is the file store of results and uploads: "local" (a
	// directory under DataDir) or s3://bucket[/prefix], shared by hosts.
	Storage string `json:"storage"`
	// S3Endpoint is host[:port] of the S3 API ("": AWS).
	S3Endpoint string `json:"s3_endpoint"`
	// S3Region is the bucket's region ("": asked from the endpoint).
	S3Region string `json:"s3_region"`
	// S3AccessKey and S3SecretKey are static S3 credentials; both empty
	// selects the AWS credential chain. Logged redacted.
	S3AccessKey string `json:"-"`
	S3SecretKey string `json:"-"`
	// S3Insecure talks plain http to the S3 endpoint.
	S3Insecure bool `json:"s3_insecure"`
	// S3PathStyle forces path-style bucket addressing.
	S3PathStyle bool `json:"s3_path_style"`
	// MemoryBudget is the memory generations may use, in bytes:
	// MemoryBudgetAuto derives it from the machine, MemoryBudgetOff admits
	// every size (memory.go).
	MemoryBudget int64 `json:"-"`
	// PromptCacheBytes bounds the prompt-embedding cache (0: no cache).
	PromptCacheBytes int64 `json:"prompt_cache_bytes"`
}

// Redacted returns the config as a flat map for the start-up log line:
// durations as strings, keys replaced by their count.
func (c Config) Redacted() map[string]any {
	return map[string]any{
		"addr": c.Addr, "model_dir": c.ModelDir, "data_dir": c.DataDir, "provider": c.Provider,
		"device_id": c.DeviceID, "threads": c.Threads, "noise": c.Noise, "api_keys": fmt.Sprintf("%d configured (redacted)", len(c.Keys)),
		"public_url": c.PublicURL, "workers": c.Workers, "max_queue": c.MaxQueue,
		"retention": c.Retention.String(), "ort_lib": c.ORTLib, "shutdown_grace": c.ShutdownGrace.String(),
		"max_body_bytes": c.MaxBodyBytes, "max_upload_bytes": c.MaxUploadBytes,
		"max_conns_per_ip": c.MaxConnsPerIP, "private_files": c.PrivateFiles,
		"allow_private_urls": c.AllowPrivateURLs, "allow_urls": c.AllowURLs,
		"lora_dir": c.LoRADir, "lora_cache_bytes": c.LoRACacheBytes, "lora_max_bytes": c.LoRAMaxBytes,
		"preview_every": c.PreviewEvery, "log_level": c.LogLevel, "max_retries": c.MaxRetries,
		"role": c.Role, "queue": redactURL(c.Queue), "worker_id": c.WorkerID, "lease": c.Lease.String(),
		"storage": c.Storage, "s3_endpoint": c.S3Endpoint, "s3_region": c.S3Region,
		"s3_access_key": redactKey(c.S3AccessKey), "s3_secret_key": redactKey(c.S3SecretKey),
		"s3_insecure": c.S3Insecure, "s3_path_style": c.S3PathStyle, "webhook_secret": redactKey(c.WebhookSecret),
		"memory_budget": c.MemoryBudgetString(), "prompt_cache_bytes": c.PromptCacheBytes,
	}
}

// redactKey says whether a credential is set without showing it.
func redactKey(v string) string {
	if v == "" {
		return ""
	}
	return "set (redacted)"
}

// redactURL hides a URL's password ("bolt" and unparsable values pass).
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	return u.Redacted()
}

// rawFlags holds the flag values that Load parses further.
type rawFlags struct{ keys, retention, grace, lease, allowURLs, memoryBudget string }

// newFlagSet defines every flag, writing into c and raw.
func newFlagSet(c *Config, raw *rawFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&c.ModelDir, "models", "models/tiny", "model directory to load")
	fs.StringVar(&c.DataDir, "data", "./data", "directory for the queue database and files (shared by all processes of a -queue redis setup)")
	fs.StringVar(&c.Provider, "provider", "cpu", "execution provider: cpu or cuda")
	fs.IntVar(&c.DeviceID, "device-id", 0, "CUDA device id")
	fs.IntVar(&c.Threads, "threads", 0, "CPU intra-op threads (0: runtime default)")
	fs.StringVar(&c.Noise, "noise", string(sampler.NoiseTorch), "how a seed becomes noise: torch (the noise diffusers draws with torch.Generator(\"cpu\").manual_seed(seed)) or philox (the earlier per-image stream, image k from seed+k)")
	fs.StringVar(&raw.keys, "keys", "", "comma-separated API keys (none: open server)")
	fs.StringVar(&c.PublicURL, "public-url", "", "external base URL (default http://<addr>); workers must use the API's")
	fs.IntVar(&c.Workers, "workers", 1, "requests generated at once")
	fs.IntVar(&c.MaxQueue, "max-queue", 1000, "maximum waiting requests (0: unbounded)")
	fs.StringVar(&raw.retention, "retention", "24h", "how long results and files are kept")
	fs.StringVar(&c.ORTLib, "ort-lib", "", "path of libonnxruntime.so (default "+DefaultORTLib+" if present, else system)")
	fs.StringVar(&raw.grace, "shutdown-grace", "30s", "time running requests get to finish at shutdown")
	fs.Int64Var(&c.MaxBodyBytes, "max-body", 16<<20, "maximum JSON request body in bytes")
	fs.Int64Var(&c.MaxUploadBytes, "max-upload", 256<<20, "maximum uploaded file in bytes")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 64, "open connections one client address may hold (0: no limit); more are answered 429 and closed")
	fs.BoolVar(&c.AllowPrivateURLs, "allow-private-urls", false, "let webhooks, reference images and LoRA URLs reach loopback and private addresses (link-local and metadata addresses stay refused)")
	fs.StringVar(&raw.allowURLs, "allow-urls", "", "comma-separated CIDRs and host names that webhooks, reference images and LoRA URLs may always reach")
	fs.StringVar(&c.LoRADir, "lora-dir", "", "directory of LoRA files that requests may name (loras[].path without a URL scheme); empty: none")
	fs.Int64Var(&c.LoRACacheBytes, "lora-cache-bytes", lora.DefaultCacheBytes, "disk budget of downloaded LoRA files kept under -data (least recently used out first)")
	fs.Int64Var(&c.LoRAMaxBytes, "lora-max-bytes", lora.DefaultMaxFileBytes, "largest LoRA file accepted, from any source")
	fs.BoolVar(&c.PrivateFiles, "private-files", false, "require an API key to download stored files (default: their unguessable URLs are the capability, as fal's)")
	fs.IntVar(&c.PreviewEvery, "preview-every", 4, "steps between previews on /stream (0: none)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.Role, "role", RoleAll, "process role: all (API and generation), api (API only) or worker (generation only)")
	fs.StringVar(&c.Queue, "queue", QueueBolt, "queue backend: bolt (one process) or redis://[user:password@]host:port/db (shared)")
	fs.StringVar(&c.WorkerID, "worker-id", "", "this process's name in the shared queue (default: host name)")
	fs.StringVar(&raw.lease, "lease", "30s", "Redis queue: a job whose worker sent no heartbeat for this long is redelivered")
	fs.IntVar(&c.MaxRetries, "max-retries", queue.DefaultMaxRetries, "times a request is run again after the server died while running it; one more crash fails it")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", "", "signs webhook deliveries (Standard Webhooks): whsec_<base64> or any string (prefer the environment variable; logged redacted)")
	fs.StringVar(&c.Storage, "storage", StorageLocal, "file store of results and uploads: local (under -data) or s3://bucket[/prefix] (shared by hosts; see -s3-*)")
	fs.StringVar(&c.S3Endpoint, "s3-endpoint", "", "S3 endpoint host[:port] (default s3.amazonaws.com)")
	fs.StringVar(&c.S3Region, "s3-region", "", "S3 region (default: asked from the endpoint)")
	fs.StringVar(&c.S3AccessKey, "s3-access-key", "", "S3 access key id (none: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or the instance role)")
	fs.StringVar(&c.S3SecretKey, "s3-secret-key", "", "S3 secret key (prefer the environment variable; logged redacted)")
	fs.BoolVar(&c.S3Insecure, "s3-insecure", false, "talk plain http to the S3 endpoint")
	fs.StringVar(&raw.memoryBudget, "memory-budget", MemoryBudgetAutoName, "memory generations may use, beyond the idle process: auto (derived from the machine), off, or a size such as 6GiB; requests that cannot fit are refused at submit (422)")
	fs.Int64Var(&c.PromptCacheBytes, "prompt-cache", 256<<20, "bytes of prompt embeddings kept for reuse (0: none)")
	fs.BoolVar(&c.S3PathStyle, "s3-path-style", false, "path-style S3 URLs (endpoint/bucket/key); default: virtual-host style for AWS and Google endpoints, path style for others")
	return fs
}

// EnvVars lists the environment variable of every flag.
func EnvVars() []string {
	var names []string
	newFlagSet(&Config{}, &rawFlags{}).VisitAll(func(f *flag.Flag) { names = append(names, envName(f.Name)) })
	return names
}

func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Load parses args (without the program name) with environment fallbacks
// from getenv, fills derived defaults and validates. fileExists decides the
// ORT library default; pass nil to use the file system.
func Load(args []string, getenv func(string) string, fileExists func(string) bool) (Config, error) {
	if fileExists == nil {
		fileExists = func(p string) bool { _, err := os.Stat(p); return err == nil }
	}
	var c Config
	var raw rawFlags
	fs := newFlagSet(&c, &raw)

	// Environment first, so that flags given on the command line override it.
	var envErrs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if err := errors.Join(envErrs...); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("config: %w\n%s", err, Usage(fs))
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("config: unexpected arguments %q", fs.Args())
	}

	var err error
	if c.Retention, err = parseDuration("retention", raw.retention); err != nil {
		return c, err
	}
	if c.ShutdownGrace, err = parseDuration("shutdown-grace", raw.grace); err != nil {
		return c, err
	}
	if c.Lease, err = parseDuration("lease", raw.lease); err != nil {
		return c, err
	}
	if c.MemoryBudget, err = parseMemoryBudget(raw.memoryBudget); err != nil {
		return c, err
	}
	for _, k := range strings.Split(raw.keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			c.Keys = append(c.Keys, k)
		}
	}
	for _, u := range strings.Split(raw.allowURLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.AllowURLs = append(c.AllowURLs, u)
		}
	}
	if c.ORTLib == "" && fileExists(DefaultORTLib) {
		c.ORTLib = DefaultORTLib
	}
	if c.PublicURL == "" {
		c.PublicURL = defaultPublicURL(c.Addr)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	return c, c.Validate()
}

// OutboundPolicy is the policy of every URL the server fetches or calls:
// -allow-private-urls, and -allow-urls entries as CIDRs (an address alone
// is a one-address range) or host names.
func (c Config) OutboundPolicy() (netguard.Policy, error) {
	p := netguard.Policy{AllowPrivate: c.AllowPrivateURLs}
	for _, u := range c.AllowURLs {
		if pfx, err := netip.ParsePrefix(u); err == nil {
			p.AllowCIDRs = append(p.AllowCIDRs, pfx.Masked())
			continue
		}
		if addr, err := netip.ParseAddr(u); err == nil {
			p.AllowCIDRs = append(p.AllowCIDRs, netip.PrefixFrom(addr, addr.BitLen()))
			continue
		}
		if !hostNameRE.MatchString(u) {
			return p, fmt.Errorf("%q is neither a CIDR, an IP address nor a host name", u)
		}
		p.AllowHosts = append(p.AllowHosts, u)
	}
	return p, nil
}

// hostNameRE matches a DNS host name (letters, digits, dashes, dots).
var hostNameRE = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$`)

// Usage renders the flag list.
func Usage(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	return b.String()
}

// HelpText is the usage of `server serve`.
func HelpText() string {
	_, err := Load([]string{"-h"}, func(string) string { return "" }, func(string) bool { return false })
	if err == nil {
		return ""
	}
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i >= 0 {
		return msg[i+1:]
	}
	return msg
}

func parseDuration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("config: -%s %q: %w", name, v, err)
	}
	return d, nil
}

// defaultPublicURL derives http://host:port from the listen address; an
// unspecified host (":8080", "0.0.0.0") becomes 127.0.0.1.
func defaultPublicURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Validate checks every field and reports all problems at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		bad("-addr %q: %v", c.Addr, err)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("-addr %q: bad port", c.Addr)
	}
	if c.ModelDir == "" {
		bad("-models must not be empty")
	}
	if c.DataDir == "" {
		bad("-data must not be empty")
	}
	if c.Provider != "cpu" && c.Provider != "cuda" {
		bad("-provider %q: want cpu or cuda", c.Provider)
	}
	if c.DeviceID < 0 {
		bad("-device-id %d: must be >= 0", c.DeviceID)
	}
	if c.Threads < 0 {
		bad("-threads %d: must be >= 0", c.Threads)
	}
	if !slices.Contains(sampler.NoiseSources(), sampler.NoiseSource(c.Noise)) {
		bad("-noise %q: want torch or philox", c.Noise)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("-public-url %q: want an absolute http(s) URL", c.PublicURL)
	} else if u.RawQuery != "" || u.Fragment != "" {
		bad("-public-url %q: must not have a query or fragment", c.PublicURL)
	}
	if c.Workers < 1 || c.Workers > 64 {
		bad("-workers %d: want 1..64", c.Workers)
	}
	if c.MaxQueue < 0 {
		bad("-max-queue %d: must be >= 0", c.MaxQueue)
	}
	if c.Retention < time.Minute {
		bad("-retention %v: must be at least 1m", c.Retention)
	}
	if c.ShutdownGrace < 0 {
		bad("-shutdown-grace %v: must be >= 0", c.ShutdownGrace)
	}
	// The body limit must stay well above the 1 MB prompt case, so that an
	// over-long prompt is a 422 about the prompt rather than a 413.
	if c.MaxBodyBytes < 2<<20 {
		bad("-max-body %d: must be at least 2 MiB", c.MaxBodyBytes)
	}
	if c.MaxUploadBytes < 1 {
		bad("-max-upload %d: must be positive", c.MaxUploadBytes)
	}
	if _, err := c.OutboundPolicy(); err != nil {
		bad("-allow-urls: %v", err)
	}
	if c.LoRACacheBytes < 0 || c.LoRAMaxBytes < 1 {
		bad("-lora-cache-bytes must be >= 0 and -lora-max-bytes > 0")
	}
	if c.LoRADir != "" {
		if st, err := os.Stat(c.LoRADir); err != nil || !st.IsDir() {
			bad("-lora-dir %q: not a directory", c.LoRADir)
		}
	}
	if c.MaxConnsPerIP < 0 {
		bad("-max-conns-per-ip %d: must be >= 0", c.MaxConnsPerIP)
	}
	if c.PreviewEvery < 0 {
		bad("-preview-every %d: must be >= 0", c.PreviewEvery)
	}
	if c.PromptCacheBytes < 0 {
		bad("-prompt-cache %d: must be >= 0", c.PromptCacheBytes)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("-log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	switch c.Role {
	case RoleAll, RoleAPI, RoleWorker:
	default:
		bad("-role %q: want all, api or worker", c.Role)
	}
	if c.Queue != QueueBolt {
		if err := validateRedisURL(c.Queue); err != nil {
			bad("-queue %q: %v", redactURL(c.Queue), err)
		}
	} else if c.Role != RoleAll {
		bad("-role %s needs a queue that processes share (-queue redis://host:port/db); the bolt queue serves one process", c.Role)
	}
	if c.Lease < time.Second || c.Lease > time.Hour {
		bad("-lease %v: want 1s..1h", c.Lease)
	}
	if c.MaxRetries < 0 || c.MaxRetries > maxRetriesLimit {
		bad("-max-retries %d: want 0..%d", c.MaxRetries, maxRetriesLimit)
	}
	if c.WebhookSecret != "" {
		if _, err := queue.ParseWebhookSecret(c.WebhookSecret); err != nil {
			bad("-webhook-secret: %v", err)
		}
	}
	if len(c.WorkerID) > 64 || strings.ContainsAny(c.WorkerID, " \t\n") {
		bad("-worker-id %q: at most 64 characters, no spaces", c.WorkerID)
	}
	for _, k := range c.Keys {
		if strings.ContainsAny(k, " \t") {
			bad("-keys: keys must not contain spaces")
			break
		}
	}
	errs = append(errs, c.validateStorage()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// maxRetriesLimit bounds -max-retries: a request that killed its server
// this many times will not stop doing so.
const maxRetriesLimit = 10

// validateRedisURL accepts redis:// and rediss:// URLs with a host and an
// optional numeric database.
func validateRedisURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return errors.New("want bolt or redis://host:port/db")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return errors.New("want bolt or a redis:// or rediss:// URL")
	}
	if u.Hostname() == "" {
		return errors.New("the Redis URL has no host")
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return fmt.Errorf("database %q is not a number", db)
		}
	}
	return nil
}

// validateStorage checks -storage and the -s3-* flags.
func (c Config) validateStorage() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Storage == StorageLocal {
		// S3 settings without an S3 store are a forgotten -storage: each
		// host would keep its files to itself.
		for name, set := range map[string]bool{"s3-endpoint": c.S3Endpoint != "", "s3-region": c.S3Region != "",
			"s3-access-key": c.S3AccessKey != "", "s3-secret-key": c.S3SecretKey != "", "s3-insecure": c.S3Insecure,
			"s3-path-style": c.S3PathStyle} {
			if set {
				bad("-%s is set but -storage is local; use -storage s3://bucket[/prefix]", name)
			}
		}
		return sortErrors(errs)
	}
	if _, _, err := parseS3URL(c.Storage); err != nil {
		bad("-storage %q: %v", c.Storage, err)
	}
	if err := validateEndpoint(c.S3Endpoint); err != nil {
		bad("-s3-endpoint %q: %v", c.S3Endpoint, err)
	}
	if !regionPattern.MatchString(c.S3Region) {
		bad("-s3-region %q: want lowercase letters, digits and dashes, e.g. us-east-1", c.S3Region)
	}
	if (c.S3AccessKey == "") != (c.S3SecretKey == "") {
		bad("-s3-access-key and -s3-secret-key go together: set both, or neither to use the AWS credential chain")
	}
	return errs
}

// sortErrors orders errors by message, so reports do not depend on map
// iteration order.
func sortErrors(errs []error) []error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}

var (
	// bucketPattern follows S3's naming rules for new buckets.
	bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	regionPattern = regexp.MustCompile(`^[a-z0-9-]{0,32}$`)
)

// parseS3URL splits s3://bucket[/prefix] into the bucket and the object
// name prefix (without surrounding slashes).
func parseS3URL(v string) (bucket, prefix string, err error) {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "s3" {
		return "", "", errors.New("want local or s3://bucket[/prefix]")
	}
	if u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", "", errors.New("want s3://bucket[/prefix] with no credentials, port, query or fragment (credentials go in -s3-access-key and -s3-secret-key)")
	}
	bucket = u.Host
	if !bucketPattern.MatchString(bucket) || strings.Contains(bucket, "..") || net.ParseIP(bucket) != nil {
		return "", "", fmt.Errorf("bad bucket name %q: 3 to 63 lowercase letters, digits, dots and dashes", bucket)
	}
	prefix = strings.Trim(u.Path, "/")
	for _, seg := range strings.Split(prefix, "/") {
		if prefix != "" && (seg == "" || seg == "." || seg == "..") {
			return "", "", fmt.Errorf("bad prefix %q: empty, . or .. path segment", prefix)
		}
	}
	return bucket, prefix, nil
}

// validateEndpoint accepts "" (AWS) or host[:port] without a scheme.
func validateEndpoint(v string) error {
	if v == "" {
		return nil
	}
	if strings.Contains(v, "://") || strings.ContainsAny(v, "/?# ") {
		return errors.New("want host[:port] without a scheme or path (use -s3-insecure for http)")
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		host, port = v, ""
	}
	if host == "" {
		return errors.New("no host")
	}
	if port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
	}
	return nil
}

// SharedStorage reports whether files go to an S3 bucket.
func (c Config) SharedStorage() bool { return c.Storage != StorageLocal }

// S3Location is the bucket and object name prefix of -storage s3://…
// (both empty for local storage).
func (c Config) S3Location() (bucket, prefix string) {
	if !c.SharedStorage() {
		return "", ""
	}
	bucket, prefix, _ = parseS3URL(c.Storage)
	return bucket, prefix
}

// SharedQueue reports whether the queue is shared by several processes.
func (c Config) SharedQueue() bool { return c.Queue != QueueBolt }

// QueuePath is the queue database file.
func (c Config) QueuePath() string { return filepath.Join(c.DataDir, "queue.db") }

// FilesDir is the root of the file store.
func (c Config) FilesDir() string { return filepath.Join(c.DataDir, "storage") }
