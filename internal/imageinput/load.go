package imageinput

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"strings"
	"time"

	"github.com/kleinserve/kleinserve/internal/netguard"
)

// Limits bound one reference image.
type Limits struct {
	// MaxBytes is the largest encoded image (default DefaultMaxBytes).
	MaxBytes int64
	// MaxPixels is the largest width×height (default DefaultMaxPixels).
	MaxPixels int64
	// MaxSide is the largest width or height (default DefaultMaxSide).
	MaxSide int
	// Timeout bounds fetching one URL (default DefaultTimeout).
	Timeout time.Duration
}

// Defaults of Limits. 25 megapixels admits a 6000×4000 camera photo; the
// pipeline scales every reference image down to about one megapixel, so
// larger inputs buy nothing. Decoding holds at most 8 bytes per pixel
// (16-bit RGBA PNG) plus the 3-byte RGB result: about 275 MB at the limit.
const (
	DefaultMaxBytes  = 32 << 20
	DefaultMaxPixels = 25_000_000
	DefaultMaxSide   = 10_000
	DefaultTimeout   = 20 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxSide <= 0 {
		l.MaxSide = DefaultMaxSide
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return l
}

// Source is where an image's bytes came from.
type Source string

const (
	// FromDataURI: a data: URI in the request.
	FromDataURI Source = "data_uri"
	// FromURL: fetched over the network through netguard.
	FromURL Source = "url"
	// FromLocalFile: one of this server's stored files, read from storage.
	FromLocalFile Source = "local_file"
)

// Fetcher fetches a URL within limits; *netguard.Guard implements it.
type Fetcher interface {
	Fetch(ctx context.Context, rawURL string, lim netguard.Limits) (*netguard.Result, error)
}

// LocalFiles opens this server's own stored files by their public URL, so
// that they are read from storage, never fetched from the server itself.
type LocalFiles interface {
	// OpenFileURL returns ok=false when rawURL is not a URL of this
	// server's files (it is then fetched over the network). For one of
	// them it opens the file; a file that does not exist is an error
	// wrapping fs.ErrNotExist.
	OpenFileURL(ctx context.Context, rawURL string) (rc io.ReadCloser, ok bool, err error)
}

// Loader reads reference images: data: URIs, this server's /files/ URLs
// (through Files) and http(s) URLs (through Fetcher).
type Loader struct {
	Fetcher Fetcher
	// Files may be nil: then every URL is fetched.
	Files  LocalFiles
	Limits Limits
}

// LoadAll loads the images in order, one at a time (so at most one is
// being decoded), and fails on the first bad one with an *Error whose
// Index is its position.
func (l *Loader) LoadAll(ctx context.Context, refs []string) ([]*Image, error) {
	out := make([]*Image, 0, len(refs))
	for i, ref := range refs {
		img, err := l.Load(ctx, ref)
		if err != nil {
			var ie *Error
			if errors.As(err, &ie) {
				ie.Index = i
			}
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Load reads and decodes one image. Failures are *Error, except a
// cancelled ctx, which is returned as such.
func (l *Loader) Load(ctx context.Context, ref string) (*Image, error) {
	lim := l.Limits.withDefaults()
	data, src, err := l.read(ctx, ref, lim)
	if err != nil {
		return nil, err
	}
	img, err := Decode(data, lim)
	if err != nil {
		return nil, err
	}
	img.Source = src
	return img, nil
}

func (l *Loader) read(ctx context.Context, ref string, lim Limits) ([]byte, Source, error) {
	if len(ref) >= 5 && strings.EqualFold(ref[:5], "data:") {
		data, err := decodeDataURI(ref, lim.MaxBytes)
		return data, FromDataURI, err
	}
	if l.Files != nil {
		rc, ok, err := l.Files.OpenFileURL(ctx, ref)
		if ok {
			data, err := readLocal(rc, err, lim.MaxBytes)
			return data, FromLocalFile, err
		}
	}
	if l.Fetcher == nil {
		return nil, FromURL, newError(ErrBadURL, nil, "only data: URIs and this server's file URLs are accepted")
	}
	res, err := l.Fetcher.Fetch(ctx, ref, netguard.Limits{Timeout: lim.Timeout, MaxBytes: lim.MaxBytes})
	if err != nil {
		return nil, FromURL, fromFetch(ctx, err)
	}
	return res.Body, FromURL, nil
}

func readLocal(rc io.ReadCloser, openErr error, max int64) ([]byte, error) {
	if openErr != nil {
		if errors.Is(openErr, fs.ErrNotExist) {
			return nil, newError(ErrUnreachable, openErr, "no such file on this server")
		}
		return nil, newError(ErrUnreachable, openErr, "the file could not be read")
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, newError(ErrUnreachable, err, "the file could not be read")
	}
	if int64(len(data)) > max {
		return nil, newError(ErrTooLarge, nil, "the image is larger than %s", netguard.FormatBytes(max))
	}
	return data, nil
}

// fromFetch maps a netguard error to this package's kinds, keeping
// netguard's user-facing reason.
func fromFetch(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	var ge *netguard.Error
	if !errors.As(err, &ge) {
		return newError(ErrUnreachable, err, "the image could not be fetched")
	}
	kind := map[error]error{
		netguard.ErrBadURL:      ErrBadURL,
		netguard.ErrRefused:     ErrRefused,
		netguard.ErrTimeout:     ErrTimeout,
		netguard.ErrTooLarge:    ErrTooLarge,
		netguard.ErrUnreachable: ErrUnreachable,
		netguard.ErrBadStatus:   ErrUnreachable,
		netguard.ErrRedirect:    ErrUnreachable,
	}[ge.Kind]
	if kind == nil {
		kind = ErrUnreachable
	}
	return &Error{Kind: kind, reason: ge.Reason(), Err: err}
}

// decodeDataURI decodes an RFC 2397 data URI: data:[<media type>][;base64],<data>.
// The media type is ignored (the bytes are sniffed). Base64 may be padded
// or not; other data is percent-decoded.
func decodeDataURI(ref string, max int64) ([]byte, error) {
	head, payload, ok := strings.Cut(ref[5:], ",")
	if !ok {
		return nil, newError(ErrBadDataURI, nil, "the data URI has no comma before its data")
	}
	isBase64 := false
	for _, p := range strings.Split(head, ";")[1:] {
		if strings.EqualFold(strings.TrimSpace(p), "base64") {
			isBase64 = true
		}
	}
	if !isBase64 {
		if int64(len(payload)) > 3*max { // each byte is at most three characters (%xx)
			return nil, newError(ErrTooLarge, nil, "the image is larger than %s", netguard.FormatBytes(max))
		}
		data, err := url.PathUnescape(payload)
		if err != nil {
			return nil, newError(ErrBadDataURI, err, "the data URI's data is not valid percent-encoding")
		}
		if int64(len(data)) > max {
			return nil, newError(ErrTooLarge, nil, "the image is larger than %s", netguard.FormatBytes(max))
		}
		return []byte(data), nil
	}
	payload = strings.TrimRight(payload, "=")
	if int64(base64.RawStdEncoding.DecodedLen(len(payload))) > max {
		return nil, newError(ErrTooLarge, nil, "the image is larger than %s", netguard.FormatBytes(max))
	}
	data, err := base64.RawStdEncoding.DecodeString(payload)
	if err != nil {
		return nil, newError(ErrBadDataURI, err, "the data URI's base64 data is invalid")
	}
	return data, nil
}
