"""Generate internal/imageinput/testdata: small images in every PNG, JPEG, WebP and BMP variant the
server accepts as reference images, and for each the 8-bit RGB pixels the reference pipeline would
see, computed with PIL the way diffusers' load_image does it: ImageOps.exif_transpose, then
convert("RGB").

    /work/venv/bin/python scripts/gen_imageinput_fixtures.py   (any Python with Pillow and numpy)

Writes <name>.<ext> (the input), <name>.want.png (the expected RGB pixels, lossless) and
manifest.json (name, input file, PIL mode, whether the codec is lossy). The output is deterministic
for a given Pillow (the JPEG and WebP encoders are bundled with it).
"""

import io
import json
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(__file__), "..", "internal", "imageinput", "testdata")
W, H = 23, 17  # odd sizes exercise the chroma edges; W != H shows a wrong rotation


def base_rgb():
    y, x = np.mgrid[0:H, 0:W]
    r = (x * 255 // (W - 1)).astype(np.uint8)
    g = (y * 255 // (H - 1)).astype(np.uint8)
    b = (((x // 4 + y // 3) % 2) * 200 + 30).astype(np.uint8)  # sharp chroma edges
    img = np.stack([r, g, b], axis=-1)
    img[2:5, 2:8] = (255, 0, 0)
    img[9:14, 12:20] = (0, 0, 255)
    return img


def u16_ramp():
    y, x = np.mgrid[0:H, 0:W]
    return ((x * 65535 // (W - 1)) ^ (y * 977)).astype(np.uint16)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width, height, bit_depth, color_type, rows, extra=b""):
    """A PNG from already packed scanlines (PIL cannot write every variant)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    data = b"".join(b"\x00" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")


def pack_bits(values, depth):
    out, acc, n = bytearray(), 0, 0
    for v in values:
        acc = (acc << depth) | int(v)
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def exif_bytes(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    e[0x010F] = "kleinserve test"
    return e.tobytes()


def xmp_packet(orientation):
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/>'
        "</rdf:RDF></x:xmpmeta>" % orientation
    ).encode()


def itxt(key, text, compressed=False):
    body = zlib.compress(text) if compressed else text
    return chunk(b"iTXt", key + b"\x00" + (b"\x01\x00" if compressed else b"\x00\x00") + b"\x00\x00" + body)


def fixtures():
    rgb = base_rgb()
    im = Image.fromarray(rgb, "RGB")
    alpha = np.fromfunction(lambda y, x: (x * 11 + y * 7) % 256, (H, W)).astype(np.uint8)
    alpha[0, :5] = 0  # fully transparent pixels keep their colour
    gray = np.array(im.convert("L"))
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    la = Image.fromarray(np.dstack([gray, alpha]), "LA")
    p = im.quantize(colors=37)
    p_trns = p.copy()
    p_trns.info["transparency"] = 3
    u16 = u16_ramp()

    def save(img, fmt, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        return b.getvalue()

    f = {}
    # PNG, every PIL mode the decoder can produce.
    f["png_rgb8.png"] = save(im, "PNG")
    f["png_rgba8.png"] = save(rgba, "PNG")
    f["png_la8.png"] = save(la, "PNG")
    f["png_l8.png"] = save(Image.fromarray(gray, "L"), "PNG")
    f["png_1bit.png"] = save(Image.fromarray(gray > 128).convert("1"), "PNG")
    f["png_p8.png"] = save(p, "PNG")
    f["png_p8_trns.png"] = save(p_trns, "PNG", transparency=3)
    f["png_l16.png"] = save(Image.fromarray(u16), "PNG")  # I;16: PIL clips to 255 in convert("RGB")
    f["png_l2.png"] = raw_png(W, H, 2, 0, [pack_bits(r >> 6, 2) for r in gray])
    f["png_l4.png"] = raw_png(W, H, 4, 0, [pack_bits(r >> 4, 4) for r in gray])
    pal4 = bytes(v for i in range(16) for v in (i * 16, 255 - i * 16, (i * 53) % 256))
    f["png_p4.png"] = raw_png(W, H, 4, 3, [pack_bits(r >> 4, 4) for r in gray], chunk(b"PLTE", pal4))
    f["png_rgb16.png"] = raw_png(W, H, 16, 2, [np.dstack([u16, u16[::-1], u16[:, ::-1]])[y].astype(">u2").tobytes() for y in range(H)])
    rgba16 = np.dstack([u16, u16[::-1], u16[:, ::-1], (u16 // 3 + 1000).astype(np.uint16)])
    f["png_rgba16.png"] = raw_png(W, H, 16, 6, [rgba16[y].astype(">u2").tobytes() for y in range(H)])
    la16 = np.dstack([u16, u16[::-1]])
    f["png_la16.png"] = raw_png(W, H, 16, 4, [la16[y].astype(">u2").tobytes() for y in range(H)])
    f["png_l8_trns.png"] = raw_png(W, H, 8, 0, [r.tobytes() for r in gray], chunk(b"tRNS", struct.pack(">H", int(gray[0, 0]))))
    f["png_rgb8_trns.png"] = raw_png(W, H, 8, 2, [r.tobytes() for r in rgb], chunk(b"tRNS", struct.pack(">HHH", *map(int, rgb[0, 0]))))
    f["png_l16_trns.png"] = raw_png(W, H, 16, 0, [u16[y].astype(">u2").tobytes() for y in range(H)], chunk(b"tRNS", struct.pack(">H", int(u16[0, 0]))))
    # PNG orientation: eXIf chunk, XMP in iTXt (plain and compressed), ImageMagick's raw profile.
    f["png_exif6.png"] = save(im, "PNG", exif=exif_bytes(6))
    plain = [r.tobytes() for r in rgb]
    f["png_xmp3.png"] = raw_png(W, H, 8, 2, plain, itxt(b"XML:com.adobe.xmp", xmp_packet(3)))
    f["png_xmpz8.png"] = raw_png(W, H, 8, 2, plain, itxt(b"XML:com.adobe.xmp", xmp_packet(8), compressed=True))
    ex = exif_bytes(5)
    raw_profile = b"Raw profile type exif\x00\x00" + zlib.compress(("\nexif\n%8d\n%s\n" % (len(ex), ex.hex())).encode())
    f["png_rawprofile5.png"] = raw_png(W, H, 8, 2, plain, chunk(b"zTXt", raw_profile))
    # An eXIf after the image data is not read by PIL (it is past IDAT when the image loads).
    f["png_exif_after_idat.png"] = f["png_rgb8.png"][:-12] + chunk(b"eXIf", exif_bytes(3)) + f["png_rgb8.png"][-12:]

    # JPEG.
    f["jpeg_420.jpg"] = save(im, "JPEG", quality=90)
    f["jpeg_422.jpg"] = save(im, "JPEG", quality=90, subsampling=1)
    f["jpeg_444.jpg"] = save(im, "JPEG", quality=90, subsampling=0)
    f["jpeg_progressive.jpg"] = save(im, "JPEG", quality=85, progressive=True)
    f["jpeg_gray.jpg"] = save(Image.fromarray(gray, "L"), "JPEG", quality=90)
    f["jpeg_cmyk.jpg"] = save(im.convert("CMYK"), "JPEG", quality=95)
    for o in range(1, 9):
        f["jpeg_exif%d.jpg" % o] = save(im, "JPEG", quality=95, subsampling=0, exif=exif_bytes(o))
    f["jpeg_xmp6.jpg"] = save(im, "JPEG", quality=95, subsampling=0, xmp=xmp_packet(6))
    f["jpeg_exif_bad.jpg"] = save(im, "JPEG", quality=95, subsampling=0, exif=exif_bytes(9))

    # WebP.
    f["webp_lossless.webp"] = save(im, "WEBP", lossless=True)
    f["webp_lossless_alpha.webp"] = save(rgba, "WEBP", lossless=True, exact=True)
    f["webp_lossy.webp"] = save(im, "WEBP", quality=90)
    f["webp_lossy_alpha.webp"] = save(rgba, "WEBP", quality=90)
    f["webp_exif8.webp"] = save(im, "WEBP", lossless=True, exif=exif_bytes(8))
    f["webp_xmp7.webp"] = save(im, "WEBP", lossless=True, xmp=xmp_packet(7))

    # BMP.
    f["bmp_rgb24.bmp"] = save(im, "BMP")
    f["bmp_p8.bmp"] = save(p, "BMP")
    return f


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    for name, data in sorted(fixtures().items()):
        with open(os.path.join(OUT, name), "wb") as fh:
            fh.write(data)
        src = Image.open(io.BytesIO(data))
        mode, fmt = src.mode, src.format
        want = ImageOps.exif_transpose(src).convert("RGB")
        want = Image.frombytes("RGB", want.size, want.tobytes())  # pixels only, no metadata
        stem = name.rsplit(".", 1)[0]
        want.save(os.path.join(OUT, stem + ".want.png"))
        lossy = fmt == "JPEG" or (fmt == "WEBP" and "lossy" in name)
        manifest.append({"name": stem, "file": name, "format": fmt, "mode": mode, "lossy": lossy,
                         "width": want.width, "height": want.height})
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
