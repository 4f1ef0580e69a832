package imageinput

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/hex"
	"io"
	"regexp"
	"strings"
)

// Orientation metadata is read the way PIL's Image.getexif does, which is
// what diffusers' load_image (ImageOps.exif_transpose) acts on:
//
//   - EXIF: JPEG APP1 "Exif\0\0" segments (concatenated when there are
//     several), the PNG eXIf chunk, PNG "Raw profile type exif" text
//     chunks (ImageMagick's hex dump), the WebP EXIF chunk;
//   - when EXIF has no Orientation tag: the first tiff:Orientation in the
//     XMP packet (JPEG APP1 "http://ns.adobe.com/xap/1.0/", PNG iTXt
//     "XML:com.adobe.xmp", WebP "XMP " chunk).
//
// PNG chunks after the image data count too (exif_transpose loads the
// image first, which reads them); a later chunk replaces an earlier one of
// the same kind. Malformed metadata counts as no orientation; PIL raises
// an error for some of it instead.

// maxMetaBytes bounds the metadata collected from one image.
const maxMetaBytes = 1 << 20

type meta struct {
	exif    []byte
	rawExif []byte // PNG "Raw profile type exif", used when there is no eXIf
	xmp     []byte
}

// orientation is the EXIF orientation (1–8) of an image, 1 when absent or
// unusable.
func (m meta) orientation() int {
	exif := m.exif
	if exif == nil {
		exif = m.rawExif
	}
	if o, ok := exifOrientation(exif); ok {
		if o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	if o, ok := xmpOrientation(m.xmp); ok && o >= 1 && o <= 8 {
		return o
	}
	return 1
}

var xmpOrientationRE = regexp.MustCompile(`tiff:Orientation(="|>)([0-9])`)

func xmpOrientation(xmp []byte) (int, bool) {
	m := xmpOrientationRE.FindSubmatch(xmp)
	if m == nil {
		return 0, false
	}
	return int(m[2][0] - '0'), true
}

// exifOrientation reads tag 0x0112 of IFD0 of a TIFF-structured EXIF
// block (after any "Exif\0\0" prefixes). ok is false when the tag is
// absent or the block malformed; a tag with more than one value or a
// non-integer type is present but unusable (PIL then finds no transpose).
func exifOrientation(exif []byte) (int, bool) {
	for bytes.HasPrefix(exif, []byte("Exif\x00\x00")) {
		exif = exif[6:]
	}
	if len(exif) < 8 {
		return 0, false
	}
	var bo binary.ByteOrder
	switch string(exif[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 0, false
	}
	off := int64(bo.Uint32(exif[4:8]))
	if off < 8 || off+2 > int64(len(exif)) {
		return 0, false
	}
	n := int64(bo.Uint16(exif[off:]))
	for i := int64(0); i < n; i++ {
		e := off + 2 + 12*i
		if e+12 > int64(len(exif)) {
			return 0, false
		}
		if bo.Uint16(exif[e:]) != 0x0112 {
			continue
		}
		typ, count := bo.Uint16(exif[e+2:]), bo.Uint32(exif[e+4:])
		if count != 1 {
			return 0, true
		}
		switch typ {
		case 3: // SHORT
			return int(bo.Uint16(exif[e+8:])), true
		case 4: // LONG
			return int(bo.Uint32(exif[e+8:])), true
		}
		return 0, true
	}
	return 0, false
}

// appendCapped appends src to dst up to maxMetaBytes in all.
func appendCapped(dst, src []byte) []byte {
	if room := maxMetaBytes - len(dst); room < len(src) {
		src = src[:max(room, 0)]
	}
	return append(dst, src...)
}

// jpegMeta walks the JPEG's marker segments up to the first scan.
func jpegMeta(data []byte) meta {
	var m meta
	exifSeen := false
	for i := 2; i+4 <= len(data); {
		if data[i] != 0xFF {
			break
		}
		marker := data[i+1]
		if marker == 0xFF { // fill byte
			i++
			continue
		}
		if marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01 {
			i += 2
			continue
		}
		if marker == 0xDA || marker == 0xD9 { // start of scan, end of image
			break
		}
		n := int(binary.BigEndian.Uint16(data[i+2:]))
		if n < 2 || i+2+n > len(data) {
			break
		}
		seg := data[i+4 : i+2+n]
		if marker == 0xE1 {
			switch {
			case bytes.HasPrefix(seg, []byte("Exif\x00\x00")):
				if exifSeen {
					seg = seg[6:] // PIL appends later segments without their prefix
				}
				m.exif, exifSeen = appendCapped(m.exif, seg), true
			case bytes.HasPrefix(seg, []byte("http://ns.adobe.com/xap/1.0/\x00")):
				_, after, _ := bytes.Cut(seg, []byte{0})
				m.xmp = after
			}
		}
		i += 2 + n
	}
	return m
}

// pngMeta reads the eXIf and text chunks.
func pngMeta(data []byte) meta {
	var m meta
	for i := 8; i+8 <= len(data); {
		n := int64(binary.BigEndian.Uint32(data[i:]))
		kind := string(data[i+4 : i+8])
		end := int64(i) + 8 + n
		if end > int64(len(data)) {
			break
		}
		body := data[i+8 : end]
		switch kind {
		case "eXIf":
			m.exif = appendCapped(append([]byte(nil), "Exif\x00\x00"...), body)
		case "tEXt", "zTXt", "iTXt":
			if key, text, ok := pngText(kind, body); ok {
				switch key {
				case "XML:com.adobe.xmp":
					m.xmp = text
				case "Raw profile type exif":
					m.rawExif = rawProfile(text)
				}
			}
		}
		i = int(end) + 4 // skip the CRC
	}
	return m
}

// pngText decodes a text chunk's key and text.
func pngText(kind string, body []byte) (string, []byte, bool) {
	key, rest, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return "", nil, false
	}
	compressed := false
	switch kind {
	case "zTXt":
		if len(rest) < 1 {
			return "", nil, false
		}
		rest, compressed = rest[1:], true
	case "iTXt":
		if len(rest) < 2 {
			return "", nil, false
		}
		compressed = rest[0] == 1
		rest = rest[2:]
		for range 2 { // language tag, translated keyword
			if _, rest, ok = bytes.Cut(rest, []byte{0}); !ok {
				return "", nil, false
			}
		}
	}
	if compressed {
		zr, err := zlib.NewReader(bytes.NewReader(rest))
		if err != nil {
			return "", nil, false
		}
		rest, err = io.ReadAll(io.LimitReader(zr, maxMetaBytes))
		if err != nil {
			return "", nil, false
		}
	}
	return string(key), rest, true
}

// rawProfile decodes ImageMagick's "\nexif\n<length>\n<hex lines>" dump:
// PIL drops the first three lines and reads the rest as hex.
func rawProfile(text []byte) []byte {
	lines := strings.Split(string(text), "\n")
	if len(lines) < 4 {
		return nil
	}
	b, err := hex.DecodeString(strings.Join(lines[3:], ""))
	if err != nil {
		return nil
	}
	return b
}

// webpMeta reads the EXIF and XMP chunks of a RIFF WebP.
func webpMeta(data []byte) meta {
	var m meta
	for i := 12; i+8 <= len(data); {
		kind := string(data[i : i+4])
		n := int64(binary.LittleEndian.Uint32(data[i+4:]))
		end := int64(i) + 8 + n
		if end > int64(len(data)) {
			break
		}
		switch kind {
		case "EXIF":
			m.exif = appendCapped(nil, data[i+8:end])
		case "XMP ":
			m.xmp = appendCapped(nil, data[i+8:end])
		}
		i = int(end + n&1) // chunks are padded to even sizes
	}
	return m
}
