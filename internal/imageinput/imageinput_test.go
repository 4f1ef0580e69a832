package imageinput

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kleinserve/kleinserve/internal/netguard"
)

func fixtureBytes(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantErr(t *testing.T, err error, kind error, reason string) *Error {
	t.Helper()
	var ie *Error
	if !errors.Is(err, kind) || !errors.As(err, &ie) || !strings.Contains(ie.Reason(), reason) {
		t.Fatalf("error %v, want %v with reason containing %q", err, kind, reason)
	}
	return ie
}

// pngHeaderOnly is a PNG whose IHDR declares w×h; its image data is
// absent, so any attempt to decode it would fail differently.
func pngHeaderOnly(w, h uint32) []byte {
	var buf bytes.Buffer
	png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1)))
	b := buf.Bytes()
	// Patch the dimensions and the IHDR's CRC.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b[:33]
}

func TestDecompressionBombRefusedBeforeDecoding(t *testing.T) {
	for _, tc := range []struct {
		w, h uint32
		lim  Limits
	}{
		{100_000, 100_000, Limits{}},          // 10 gigapixels in 33 bytes
		{DefaultMaxSide + 1, 10, Limits{}},    // one side too long
		{6000, 4200, Limits{}},                // 25.2 MP
		{200, 200, Limits{MaxPixels: 39_999}}, // a caller's own limit
		{64, 65, Limits{MaxSide: 64}},
	} {
		_, err := Decode(pngHeaderOnly(tc.w, tc.h), tc.lim)
		wantErr(t, err, ErrTooManyPixels, fmt.Sprintf("%d×%d", tc.w, tc.h))
	}
	// Within the limits the same header goes on to decoding, and fails there.
	_, err := Decode(pngHeaderOnly(100, 100), Limits{})
	wantErr(t, err, ErrUnsupported, "not a valid or supported png image")
}

func TestUnsupportedAndCorrupt(t *testing.T) {
	for _, tc := range []struct {
		data   []byte
		reason string
	}{
		{[]byte("GIF89a\x01\x00\x01\x00"), "GIF images are not supported"},
		{[]byte("<svg xmlns=...>"), "SVG images are not supported"},
		{[]byte("\x00\x00\x00\x18ftypheic...."), "HEIC/AVIF images are not supported"},
		{[]byte("hello world"), "not a PNG, JPEG, WebP or BMP image"},
		{nil, "not a PNG, JPEG, WebP or BMP image"},
		{fixtureBytes(t, "jpeg_420.jpg")[:200], "not a valid or supported jpeg image"},
		{fixtureBytes(t, "png_rgb8.png")[:60], "not a valid or supported png image"},
		{[]byte("RIFF\x10\x00\x00\x00WEBPVP8X"), "not a valid or supported webp image"},
	} {
		_, err := Decode(tc.data, Limits{})
		wantErr(t, err, ErrUnsupported, tc.reason)
	}
}

func TestDecodeReportsMetadata(t *testing.T) {
	data := fixtureBytes(t, "jpeg_exif6.jpg")
	img, err := Decode(data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Format != JPEG || img.Bytes != len(data) || img.Orientation != 6 || img.Width != 17 || img.Height != 23 ||
		len(img.Pix) != 3*17*23 {
		t.Fatalf("%+v", *img)
	}
	_, err = Decode(data, Limits{MaxBytes: int64(len(data) - 1)})
	wantErr(t, err, ErrTooLarge, "larger than")
}

// TestOrientMatchesDefinition checks each EXIF orientation on a 3×2 image
// against where the EXIF specification puts the stored pixel (0,0).
func TestOrientMatchesDefinition(t *testing.T) {
	// Pixel (x, y) of the stored 3×2 image has value 10*y + x in all channels.
	pix := make([]uint8, 0, 18)
	for y := 0; y < 2; y++ {
		for x := 0; x < 3; x++ {
			v := uint8(10*y + x)
			pix = append(pix, v, v, v)
		}
	}
	// Rows of the upright image, top to bottom.
	want := map[int][]uint8{
		1: {0, 1, 2, 10, 11, 12},
		2: {2, 1, 0, 12, 11, 10},
		3: {12, 11, 10, 2, 1, 0},
		4: {10, 11, 12, 0, 1, 2},
		5: {0, 10, 1, 11, 2, 12},
		6: {10, 0, 11, 1, 12, 2},
		7: {12, 2, 11, 1, 10, 0},
		8: {2, 12, 1, 11, 0, 10},
	}
	for o := 1; o <= 8; o++ {
		out, w, h := orient(pix, 3, 2, o)
		if (o >= 5) != (w == 2 && h == 3) {
			t.Fatalf("orientation %d: size %dx%d", o, w, h)
		}
		var got []uint8
		for i := 0; i < len(out); i += 3 {
			got = append(got, out[i])
		}
		if !bytes.Equal(got, want[o]) {
			t.Errorf("orientation %d: %v, want %v", o, got, want[o])
		}
	}
}

func TestExifOrientationParsing(t *testing.T) {
	entry := func(bo string, tag, typ uint16, count, val uint32) []byte {
		b := []byte(bo)
		put16 := func(v uint16) {
			if bo[0] == 'I' {
				b = append(b, byte(v), byte(v>>8))
			} else {
				b = append(b, byte(v>>8), byte(v))
			}
		}
		put32 := func(v uint32) {
			if bo[0] == 'I' {
				b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
			} else {
				b = append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
			}
		}
		put32(8)
		put16(1)
		put16(tag)
		put16(typ)
		put32(count)
		if typ == 3 {
			put16(uint16(val))
			put16(0)
		} else {
			put32(val)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		exif []byte
		o    int
		ok   bool
	}{
		{"little endian short", entry("II*\x00", 0x0112, 3, 1, 6), 6, true},
		{"big endian short", entry("MM\x00*", 0x0112, 3, 1, 8), 8, true},
		{"with prefix", append([]byte("Exif\x00\x00"), entry("II*\x00", 0x0112, 3, 1, 3)...), 3, true},
		{"long", entry("MM\x00*", 0x0112, 4, 1, 5), 5, true},
		{"two values", entry("II*\x00", 0x0112, 3, 2, 6), 0, true},
		{"other tag", entry("II*\x00", 0x010F, 3, 1, 6), 0, false},
		{"truncated", entry("II*\x00", 0x0112, 3, 1, 6)[:15], 0, false},
		{"not tiff", []byte("hello world!"), 0, false},
		{"empty", nil, 0, false},
	} {
		o, ok := exifOrientation(tc.exif)
		if o != tc.o || ok != tc.ok {
			t.Errorf("%s: %d %v, want %d %v", tc.name, o, ok, tc.o, tc.ok)
		}
	}
}

// fakeFetcher answers fixed results per URL.
type fakeFetcher struct {
	bodies map[string][]byte
	errs   map[string]error
	calls  []string
}

func (f *fakeFetcher) Fetch(_ context.Context, raw string, lim netguard.Limits) (*netguard.Result, error) {
	f.calls = append(f.calls, raw)
	if err, ok := f.errs[raw]; ok {
		return nil, err
	}
	b, ok := f.bodies[raw]
	if !ok {
		return nil, &netguard.Error{Kind: netguard.ErrBadStatus, Status: 404}
	}
	if int64(len(b)) > lim.MaxBytes {
		return nil, &netguard.Error{Kind: netguard.ErrTooLarge, Limit: lim.MaxBytes}
	}
	return &netguard.Result{Body: b}, nil
}

// fakeFiles serves files under http://self.test/files/.
type fakeFiles map[string][]byte

func (f fakeFiles) OpenFileURL(_ context.Context, raw string) (io.ReadCloser, bool, error) {
	key, ok := strings.CutPrefix(raw, "http://self.test/files/")
	if !ok {
		return nil, false, nil
	}
	b, found := f[key]
	if !found {
		return nil, true, fmt.Errorf("no file %s: %w", key, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), true, nil
}

func TestLoaderSources(t *testing.T) {
	pngData := fixtureBytes(t, "png_rgb8.png")
	jpg := fixtureBytes(t, "jpeg_420.jpg")
	fetch := &fakeFetcher{bodies: map[string][]byte{"https://img.example/a.jpg": jpg}}
	l := &Loader{Fetcher: fetch, Files: fakeFiles{"k.png": pngData}}
	ctx := context.Background()
	refs := []string{
		"data:image/png;base64," + base64.StdEncoding.EncodeToString(pngData),
		"data:;base64," + base64.RawStdEncoding.EncodeToString(pngData), // unpadded, no type
		"data:image/png," + url.PathEscape(string(pngData)),
		"https://img.example/a.jpg",
		"http://self.test/files/k.png",
	}
	imgs, err := l.LoadAll(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []Source{FromDataURI, FromDataURI, FromDataURI, FromURL, FromLocalFile} {
		if imgs[i].Source != want {
			t.Errorf("image %d: source %s, want %s", i, imgs[i].Source, want)
		}
	}
	if !bytes.Equal(imgs[0].Pix, imgs[4].Pix) || !bytes.Equal(imgs[0].Pix, imgs[2].Pix) || imgs[3].Format != JPEG {
		t.Fatal("the same image from different sources decoded differently")
	}
	if len(fetch.calls) != 1 {
		t.Fatalf("fetched %v; the server's own file must be read from storage", fetch.calls)
	}
}

func TestLoaderErrors(t *testing.T) {
	fetch := &fakeFetcher{
		bodies: map[string][]byte{"https://img.example/text": []byte("hello"), "https://img.example/big": make([]byte, 2000)},
		errs: map[string]error{
			"http://169.254.169.254/": &netguard.Error{Kind: netguard.ErrRefused, Class: netguard.LinkLocal},
			"https://slow.example/":   &netguard.Error{Kind: netguard.ErrTimeout},
			"ftp://x/":                &netguard.Error{Kind: netguard.ErrBadURL, Detail: "the scheme must be http or https"},
		},
	}
	l := &Loader{Fetcher: fetch, Files: fakeFiles{}, Limits: Limits{MaxBytes: 1000}}
	ctx := context.Background()
	for _, tc := range []struct {
		ref    string
		kind   error
		reason string
	}{
		{"data:image/png;base64,%%%", ErrBadDataURI, "base64"},
		{"data:image/png;base64", ErrBadDataURI, "no comma"},
		{"data:,%zz", ErrBadDataURI, "percent"},
		{"data:;base64," + strings.Repeat("A", 2000), ErrTooLarge, "larger than 1000 bytes"},
		{"data:;base64,aGVsbG8=", ErrUnsupported, "not a PNG"},
		{"http://169.254.169.254/", ErrRefused, "link-local"},
		{"https://slow.example/", ErrTimeout, "did not answer"},
		{"ftp://x/", ErrBadURL, "scheme"},
		{"https://img.example/missing", ErrUnreachable, "HTTP 404"},
		{"https://img.example/text", ErrUnsupported, "not a PNG"},
		{"https://img.example/big", ErrTooLarge, "larger than the limit of 1000 bytes"},
		{"http://self.test/files/nope.png", ErrUnreachable, "no such file"},
	} {
		_, err := l.LoadAll(ctx, []string{"data:;base64," + base64.StdEncoding.EncodeToString(fixtureBytes(t, "png_l8.png")), tc.ref})
		if ie := wantErr(t, err, tc.kind, tc.reason); ie.Index != 1 {
			t.Errorf("%s: index %d", tc.ref, ie.Index)
		}
	}
	// Without a fetcher only data: URIs and local files are accepted.
	_, err := (&Loader{}).Load(ctx, "https://img.example/a.jpg")
	wantErr(t, err, ErrBadURL, "only data: URIs")
}

// TestLoaderLimitsApply: the pixel limit of the Loader applies to every
// source.
func TestLoaderLimitsApply(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 40, 30))
	img.Set(1, 1, color.NRGBA{1, 2, 3, 4})
	var buf bytes.Buffer
	png.Encode(&buf, img)
	l := &Loader{Files: fakeFiles{"x.png": buf.Bytes()}, Limits: Limits{MaxPixels: 1199}}
	_, err := l.Load(context.Background(), "http://self.test/files/x.png")
	wantErr(t, err, ErrTooManyPixels, "40×30")
	l.Limits.MaxPixels = 1200
	got, err := l.Load(context.Background(), "http://self.test/files/x.png")
	if err != nil || got.Pix[3*(40+1)+0] != 1 || got.Pix[3*(40+1)+2] != 3 {
		t.Fatalf("%v", err)
	}
}
