package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// DefaultS3Endpoint is the endpoint used when S3Options leaves it empty.
const DefaultS3Endpoint = "s3.amazonaws.com"

// DefaultPartSize is the S3 part size of streamed uploads: the memory one
// upload in flight holds, whatever the file size.
const DefaultPartSize = 16 << 20

// minPartSize is S3's smallest allowed part (all but the last).
const minPartSize = 5 << 20

// maxStagingBytes bounds an upload's staging record when read back.
const maxStagingBytes = 64 << 10

// fileNameMeta is the user-metadata key (x-amz-meta-file-name) of a file's
// original name, stored percent-encoded: metadata travels as HTTP headers,
// which cannot carry every UTF-8 name.
const fileNameMeta = "File-Name"

// S3Options locates the bucket and says how to reach it.
type S3Options struct {
	// Endpoint is host[:port] of the S3 API (default s3.amazonaws.com).
	Endpoint string
	// Region is the bucket's region ("" lets the client ask the server).
	Region string
	// AccessKey and SecretKey are static credentials. Both empty selects
	// the AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, then
	// ~/.aws/credentials, then an instance or pod role (IAM).
	AccessKey, SecretKey string
	// Insecure talks plain http to the endpoint.
	Insecure bool
	// PathStyle forces path-style addressing (endpoint/bucket/key); by
	// default AWS and Google endpoints get virtual-host style, others path
	// style.
	PathStyle bool
	// Bucket must exist; OpenS3 fails if it does not.
	Bucket string
	// Prefix is prepended to every object name (no leading or trailing
	// slash), so one bucket can hold several deployments.
	Prefix string
	// PartSize is the part size of streamed uploads (default 16 MiB,
	// at least 5 MiB).
	PartSize int64
	// Transport carries the requests (nil: the client's default), e.g. to
	// trust a private certificate authority.
	Transport http.RoundTripper
}

// S3 is a Store in a bucket of an S3-compatible object store, shared by
// every process that opens the same bucket and prefix. Layout under the
// prefix:
//
//	files/<key>          the bytes; content type as the object's
//	                     Content-Type, original name as x-amz-meta-file-name
//	uploads/<id>.json    staging record of an initiated upload
//	uploads/<id>/<n>     received part n of a multipart upload
//
// Files are read back and served through the API, so clients never need
// bucket credentials and URLs stay those of the local store.
//
// Retention: DeleteOlderThan lists files/ and uploads/ and deletes what was
// last modified before the cutoff (one LIST request per 1000 objects), and
// aborts S3 multipart uploads under the prefix initiated before it (left
// by a process that died mid-upload). Keys stay purely random, as on local
// disk, so a GET needs no index and URLs keep their shape; the price is a
// listing of all live objects per janitor run, which is cheap at the
// janitor's interval (at most hourly).
type S3 struct {
	urls
	client    *minio.Client
	probe     *minio.Client // the same without retries, for Ping
	bucket    string
	prefix    string // "" or "<prefix>/"
	endpoint  string // for messages
	maxUpload int64
	partSize  int64
	locks     uploadLocks
	// full is set when a write failed for want of space and cleared by the
	// next successful write (an object store has no free-space query).
	full atomic.Bool
}

var _ Store = (*S3)(nil)

// CheckSpace reports ErrNoSpace while the last write to the bucket failed
// because the store was full.
func (s *S3) CheckSpace(context.Context) error {
	if s.full.Load() {
		return &noSpaceError{cause: errors.New("the last write to the bucket failed for want of space")}
	}
	return nil
}

// s3NoSpace turns an object store's "full" answer (HTTP 507, as MinIO
// sends; quota errors) into ErrNoSpace and records the store's state.
func (s *S3) s3NoSpace(err error) error {
	if err == nil {
		s.full.Store(false)
		return nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.StatusCode == http.StatusInsufficientStorage ||
		er.Code == "XMinioStorageFull" || er.Code == "XMinioAdminBucketQuotaExceeded") {
		s.full.Store(true)
		return &noSpaceError{cause: err}
	}
	return err
}

// Open reads a stored file.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if !keyPattern.MatchString(key) {
		return nil, ErrNotFound
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.fileName(key), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("storage: get %s: %w", key, err)
	}
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		if isNoSuchKey(err) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("storage: stat %s: %w", key, err)
	}
	return obj, nil
}

// OpenFileURL opens the file a URL of this store names.
func (s *S3) OpenFileURL(ctx context.Context, rawURL string) (io.ReadCloser, bool, error) {
	return openFileURL(ctx, s.urls, s.Open, rawURL)
}

// OpenS3 connects to the bucket and checks that it exists, so that a
// misconfigured store fails at start rather than at the first upload.
func OpenS3(ctx context.Context, o S3Options, opts Options) (*S3, error) {
	opts = opts.withDefaults()
	if o.Endpoint == "" {
		o.Endpoint = DefaultS3Endpoint
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < minPartSize {
		return nil, fmt.Errorf("storage: S3 part size %d is below the S3 minimum of %d bytes", o.PartSize, minPartSize)
	}
	if o.Bucket == "" {
		return nil, errors.New("storage: no S3 bucket given")
	}
	var creds *credentials.Credentials
	if o.AccessKey != "" || o.SecretKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	newClient := func(retries int) (*minio.Client, error) {
		c, err := minio.New(o.Endpoint, &minio.Options{Creds: creds, Secure: !o.Insecure, Region: o.Region,
			BucketLookup: lookup, Transport: o.Transport, MaxRetries: retries})
		if err != nil {
			return nil, fmt.Errorf("storage: S3 client for %s: %w", o.Endpoint, err)
		}
		return c, nil
	}
	client, err := newClient(0) // the library's retries, for transient failures
	if err != nil {
		return nil, err
	}
	// Readiness probes want a prompt answer, not retries with backoff.
	probe, err := newClient(1)
	if err != nil {
		return nil, err
	}
	prefix := strings.Trim(o.Prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	s := &S3{urls: urls{opts.PublicURL}, client: client, probe: probe, bucket: o.Bucket, prefix: prefix,
		endpoint: o.Endpoint, maxUpload: opts.MaxUploadBytes, partSize: o.PartSize}
	if err := s.checkBucket(ctx, client); err != nil {
		return nil, err
	}
	return s, nil
}

// MaxUploadBytes is the upload size limit.
func (s *S3) MaxUploadBytes() int64 { return s.maxUpload }

// Ping checks that the bucket exists and answers: one HEAD request,
// without retries.
func (s *S3) Ping(ctx context.Context) error { return s.checkBucket(ctx, s.probe) }

func (s *S3) checkBucket(ctx context.Context, client *minio.Client) error {
	ok, err := client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("storage: S3 bucket %q at %s unreachable: %w", s.bucket, s.endpoint, err)
	}
	if !ok {
		return fmt.Errorf("storage: S3 bucket %q does not exist at %s (create it first)", s.bucket, s.endpoint)
	}
	return nil
}

func (s *S3) fileName(key string) string  { return s.prefix + "files/" + key }
func (s *S3) uploadName(id string) string { return s.prefix + "uploads/" + id + ".json" }
func (s *S3) partName(id string, n int) string {
	return s.prefix + "uploads/" + id + "/" + strconv.Itoa(n)
}

// fileOptions carries a file's metadata into its object.
func fileOptions(contentType, name string) minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: contentType, UserMetadata: map[string]string{fileNameMeta: url.PathEscape(name)}}
}

// isNoSuchKey tells a missing object from other failures (a missing
// bucket is a failure, not a missing file).
func isNoSuchKey(err error) bool {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	return er.Code == "NoSuchKey" || (er.StatusCode == http.StatusNotFound && er.Code != "NoSuchBucket")
}

// Save stores generated bytes under a new random key.
func (s *S3) Save(ctx context.Context, data []byte, contentType, ext string) (File, error) {
	key, err := newKey(contentType, ext)
	if err != nil {
		return File{}, err
	}
	_, err = s.client.PutObject(ctx, s.bucket, s.fileName(key), bytes.NewReader(data), int64(len(data)), fileOptions(contentType, key))
	if err = s.s3NoSpace(err); err != nil {
		return File{}, fmt.Errorf("storage: put %s: %w", key, err)
	}
	return File{Key: key, URL: s.FileURL(key), ContentType: contentType, FileName: key, Size: int64(len(data))}, nil
}

// Stat describes a stored file (one HEAD request).
func (s *S3) Stat(ctx context.Context, key string) (File, error) {
	if !keyPattern.MatchString(key) {
		return File{}, ErrNotFound
	}
	info, err := s.client.StatObject(ctx, s.bucket, s.fileName(key), minio.StatObjectOptions{})
	if isNoSuchKey(err) {
		return File{}, ErrNotFound
	}
	if err != nil {
		return File{}, fmt.Errorf("storage: stat %s: %w", key, err)
	}
	return File{Key: key, URL: s.FileURL(key), ContentType: servedContentType(info.ContentType, key),
		FileName: originalName(info), Size: info.Size}, nil
}

func originalName(info minio.ObjectInfo) string {
	v := info.UserMetadata[fileNameMeta]
	if name, err := url.PathUnescape(v); err == nil {
		return name
	}
	return v
}

// Serve streams a stored file from the bucket (GET and HEAD, with ranges
// and conditional requests via http.ServeContent; a range becomes a ranged
// GET on the bucket).
func (s *S3) Serve(w http.ResponseWriter, r *http.Request, key string) error {
	if !keyPattern.MatchString(key) {
		return ErrNotFound
	}
	obj, err := s.client.GetObject(r.Context(), s.bucket, s.fileName(key), minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("storage: get %s: %w", key, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if isNoSuchKey(err) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: stat %s: %w", key, err)
	}
	setFileHeaders(w.Header(), servedContentType(info.ContentType, key))
	http.ServeContent(w, r, "", info.LastModified, obj)
	return nil
}

// InitiateUpload reserves an upload id and the key its bytes will get; the
// staging record goes to the bucket, so any API process can take the PUT.
func (s *S3) InitiateUpload(ctx context.Context, contentType, fileName string) (Upload, error) {
	return s.initiate(ctx, contentType, fileName, false)
}

// InitiateMultipartUpload reserves an upload whose bytes arrive in parts.
func (s *S3) InitiateMultipartUpload(ctx context.Context, contentType, fileName string) (Upload, error) {
	return s.initiate(ctx, contentType, fileName, true)
}

func (s *S3) initiate(ctx context.Context, contentType, fileName string, multipart bool) (Upload, error) {
	id, token, m, err := newUploadMeta(contentType, fileName, multipart)
	if err != nil {
		return Upload{}, err
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return Upload{}, fmt.Errorf("storage: encode upload record: %w", err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, s.uploadName(id), bytes.NewReader(raw), int64(len(raw)),
		minio.PutObjectOptions{ContentType: "application/json"})
	if err = s.s3NoSpace(err); err != nil {
		return Upload{}, fmt.Errorf("storage: put upload record: %w", err)
	}
	return Upload{ID: id, Token: token, UploadURL: s.UploadURL(id, token), FileURL: s.FileURL(m.Key)}, nil
}

// readUpload loads the staging record of an upload id and checks its
// token, age and kind.
func (s *S3) readUpload(ctx context.Context, id, token string, multipart bool) (uploadMeta, error) {
	var m uploadMeta
	if !uploadIDPattern.MatchString(id) {
		return m, ErrNotFound
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.uploadName(id), minio.GetObjectOptions{})
	if err != nil {
		return m, fmt.Errorf("storage: get upload record: %w", err)
	}
	defer obj.Close()
	raw, err := io.ReadAll(io.LimitReader(obj, maxStagingBytes))
	if isNoSuchKey(err) {
		return m, ErrNotFound
	}
	if err != nil {
		return m, fmt.Errorf("storage: read upload record: %w", err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("storage: decode upload record: %w", err)
	}
	if err := m.authorize(token, time.Now()); err != nil {
		return m, err
	}
	if m.Multipart != multipart {
		return m, ErrNotFound // a simple PUT to a multipart upload, or a part to a simple one
	}
	return m, nil
}

// CompleteUpload streams the bytes of an initiated upload into the bucket.
func (s *S3) CompleteUpload(ctx context.Context, id, token string, body io.Reader, contentType string) (File, error) {
	if err := checkPutContentType(contentType); err != nil {
		return File{}, err
	}
	unlock, ok := s.locks.try(id)
	if !ok {
		return File{}, ErrBusy
	}
	defer unlock()
	m, err := s.readUpload(ctx, id, token, false)
	if err != nil {
		return File{}, err
	}
	m.ContentType = putContentType(m.ContentType, contentType)
	size, err := s.putStream(ctx, s.fileName(m.Key), &cappedReader{r: contextReader{ctx, body}, left: s.maxUpload},
		fileOptions(m.ContentType, m.FileName))
	if err != nil {
		return File{}, err
	}
	if _, err := s.removeObjects(ctx, []string{s.uploadName(id)}); err != nil {
		return File{}, fmt.Errorf("storage: finish upload: %w", err)
	}
	return File{Key: m.Key, URL: s.FileURL(m.Key), ContentType: m.ContentType, FileName: m.FileName, Size: size}, nil
}

// storedParts returns the sizes of an upload's stored parts by number.
func (s *S3) storedParts(ctx context.Context, id string) (map[int]int64, error) {
	sizes := map[int]int64{}
	dir := s.prefix + "uploads/" + id + "/"
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("storage: list parts: %w", obj.Err)
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(obj.Key, dir)); err == nil {
			sizes[n] = obj.Size
		}
	}
	return sizes, nil
}

// removeUpload deletes an upload's parts and staging record.
func (s *S3) removeUpload(ctx context.Context, id string) error {
	sizes, err := s.storedParts(ctx, id)
	names := []string{s.uploadName(id)}
	for n := range sizes {
		names = append(names, s.partName(id, n))
	}
	_, rerr := s.removeObjects(ctx, names)
	return errors.Join(err, rerr)
}

// PutPart streams part n of a multipart upload into the bucket. The part
// may only be as large as what the other stored parts leave of
// MaxUploadBytes; past that the upload is deleted (ErrTooLarge).
func (s *S3) PutPart(ctx context.Context, id, token string, n int, body io.Reader) (Part, error) {
	if err := checkPartNumber(n); err != nil {
		return Part{}, err
	}
	unlock, err := s.locks.wait(ctx, id)
	if err != nil {
		return Part{}, err
	}
	defer unlock()
	if _, err := s.readUpload(ctx, id, token, true); err != nil {
		return Part{}, err
	}
	sizes, err := s.storedParts(ctx, id)
	if err != nil {
		return Part{}, err
	}
	left := partBudget(s.maxUpload, sizes, n)
	h := sha256.New()
	src := &cappedReader{r: io.TeeReader(contextReader{ctx, body}, h), left: left}
	_, err = s.putStream(ctx, s.partName(id, n), src, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if errors.Is(err, ErrTooLarge) {
		return Part{}, errors.Join(err, s.removeUpload(ctx, id))
	}
	if err != nil {
		return Part{}, err
	}
	return Part{PartNumber: n, ETag: partETag(h)}, nil
}

// CompleteMultipart streams the listed parts, in order and with their
// etags checked, into the file, then removes the parts. The bytes pass
// through this process once more (parts need not meet S3's 5 MiB part
// minimum, so a server-side compose is not always possible).
func (s *S3) CompleteMultipart(ctx context.Context, id, token string, parts []Part) (File, error) {
	unlock, ok := s.locks.try(id)
	if !ok {
		return File{}, ErrBusy
	}
	defer unlock()
	m, err := s.readUpload(ctx, id, token, true)
	if err != nil {
		return File{}, err
	}
	if err := checkPartList(parts); err != nil {
		return File{}, err
	}
	m.ContentType = servedContentType(m.ContentType, m.Key)
	joined := &partsReader{ctx: ctx, s: s, id: id, parts: parts}
	defer joined.Close()
	size, err := s.putStream(ctx, s.fileName(m.Key), &cappedReader{r: joined, left: s.maxUpload},
		fileOptions(m.ContentType, m.FileName))
	if errors.Is(err, ErrTooLarge) {
		return File{}, errors.Join(err, s.removeUpload(ctx, id))
	}
	if err != nil {
		return File{}, err
	}
	// The record, the listed parts and any not listed.
	if err := s.removeUpload(ctx, id); err != nil {
		return File{}, fmt.Errorf("storage: finish upload: %w", err)
	}
	return File{Key: m.Key, URL: s.FileURL(m.Key), ContentType: m.ContentType, FileName: m.FileName, Size: size}, nil
}

// partsReader reads the stored parts of an upload one after another and
// fails with ErrBadPart when a part is missing or its etag differs.
type partsReader struct {
	ctx   context.Context
	s     *S3
	id    string
	parts []Part
	next  int           // index in parts of the part after cur
	cur   *minio.Object // nil between parts
	hash  hash.Hash
}

func (p *partsReader) Read(b []byte) (int, error) {
	for {
		if p.cur == nil {
			if p.next == len(p.parts) {
				return 0, io.EOF
			}
			obj, err := p.s.client.GetObject(p.ctx, p.s.bucket, p.s.partName(p.id, p.parts[p.next].PartNumber), minio.GetObjectOptions{})
			if err != nil {
				return 0, fmt.Errorf("storage: get part: %w", err)
			}
			p.cur, p.hash = obj, sha256.New()
			p.next++
		}
		part := p.parts[p.next-1]
		n, err := p.cur.Read(b)
		p.hash.Write(b[:n])
		switch {
		case err == io.EOF:
			p.cur.Close()
			p.cur = nil
			if partETag(p.hash) != part.ETag {
				return n, fmt.Errorf("%w: etag of part %d does not match", ErrBadPart, part.PartNumber)
			}
			if n > 0 {
				return n, nil
			}
		case isNoSuchKey(err):
			return n, fmt.Errorf("%w: part %d was never uploaded", ErrBadPart, part.PartNumber)
		case err != nil:
			return n, fmt.Errorf("storage: read part %d: %w", part.PartNumber, err)
		default:
			return n, nil
		}
	}
}

// Close releases the part being read, if any.
func (p *partsReader) Close() error {
	if p.cur != nil {
		err := p.cur.Close()
		p.cur = nil
		return err
	}
	return nil
}

// putStream uploads what r yields as one object. A body smaller than a
// part goes up in one PUT; a larger one streams through an S3 multipart
// upload, one part-sized buffer at a time, so memory stays bounded by the
// part size whatever the file size. A read error (ErrTooLarge from a
// cappedReader, a bad part, a cancelled request) aborts the upload and
// nothing is stored; the error is returned wrapped.
func (s *S3) putStream(ctx context.Context, name string, r io.Reader, opts minio.PutObjectOptions) (int64, error) {
	first, err := readUpTo(r, s.partSize)
	if err != nil {
		return 0, fmt.Errorf("storage: write %s: %w", name, err)
	}
	if int64(len(first)) < s.partSize {
		_, err := s.client.PutObject(ctx, s.bucket, name, bytes.NewReader(first), int64(len(first)), opts)
		if err = s.s3NoSpace(err); err != nil {
			return 0, fmt.Errorf("storage: put %s: %w", name, err)
		}
		return int64(len(first)), nil
	}
	opts.PartSize = uint64(s.partSize)
	info, err := s.client.PutObject(ctx, s.bucket, name, io.MultiReader(bytes.NewReader(first), r), -1, opts)
	if err = s.s3NoSpace(err); err != nil {
		return 0, fmt.Errorf("storage: put %s: %w", name, err)
	}
	return info.Size, nil
}

// readUpTo reads until EOF or max bytes, growing its buffer as data comes
// (small uploads stay small) but never past max.
func readUpTo(r io.Reader, max int64) ([]byte, error) {
	buf := make([]byte, 0, min(max, 64<<10))
	for int64(len(buf)) < max {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(int64(cap(buf)), max-int64(cap(buf)))))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), int(max))])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// removeObjects deletes objects, one multi-object request per 1000, and
// returns how many it removed; missing ones are not an error.
func (s *S3) removeObjects(ctx context.Context, names []string) (int, error) {
	if len(names) == 0 {
		return 0, nil
	}
	results, err := s.client.RemoveObjectsWithIter(ctx, s.bucket, func(yield func(minio.ObjectInfo) bool) {
		for _, n := range names {
			if !yield(minio.ObjectInfo{Key: n}) {
				return
			}
		}
	}, minio.RemoveObjectsOptions{})
	if err != nil {
		return 0, fmt.Errorf("storage: remove objects: %w", err)
	}
	var errs []error
	removed := 0
	for res := range results {
		if res.Err != nil && !isNoSuchKey(res.Err) {
			errs = append(errs, fmt.Errorf("storage: remove %s: %w", res.ObjectName, res.Err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// DeleteOlderThan removes files, staging records and parts last modified
// before t, and aborts S3 multipart uploads under the prefix initiated
// before t. It returns how many files it removed.
func (s *S3) DeleteOlderThan(ctx context.Context, t time.Time) (int, error) {
	var errs []error
	removed := 0
	for _, dir := range []string{"files/", "uploads/"} {
		cutoff := t
		if dir == "uploads/" {
			cutoff = uploadCutoff(t)
		}
		var expired []string
		for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + dir, Recursive: true}) {
			if obj.Err != nil {
				errs = append(errs, fmt.Errorf("storage: list %s: %w", dir, obj.Err))
				break
			}
			if obj.LastModified.Before(cutoff) {
				expired = append(expired, obj.Key)
			}
		}
		n, err := s.removeObjects(ctx, expired)
		if err != nil {
			errs = append(errs, err)
		}
		if dir == "files/" {
			removed = n
		}
	}
	if err := s.abortStaleMultipart(ctx, t); err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// abortStaleMultipart aborts S3 multipart uploads under the prefix that
// were initiated before t: a process killed while streaming an upload
// leaves one behind, invisible to listings but billed.
func (s *S3) abortStaleMultipart(ctx context.Context, t time.Time) error {
	core := minio.Core{Client: s.client}
	var keyMarker, idMarker string
	var errs []error
	for {
		res, err := core.ListMultipartUploads(ctx, s.bucket, s.prefix, keyMarker, idMarker, "", 1000)
		if isNoSuchUpload(err) {
			// Some S3-compatible servers (gofakes3) answer a listing of a
			// bucket that never had a multipart upload this way.
			return errors.Join(errs...)
		}
		if err != nil {
			return fmt.Errorf("storage: list multipart uploads: %w", err)
		}
		for _, u := range res.Uploads {
			if u.Initiated.Before(t) {
				if err := core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil && !isNoSuchUpload(err) {
					errs = append(errs, fmt.Errorf("storage: abort multipart upload of %s: %w", u.Key, err))
				}
			}
		}
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			return errors.Join(errs...)
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

func isNoSuchUpload(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && er.Code == "NoSuchUpload"
}
