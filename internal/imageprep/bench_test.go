package imageprep

import "testing"

// BenchmarkPrepareReference is the whole reference path of a 12-megapixel
// photo (4000x3000 to the 1024² budget, LANCZOS) and of an image already
// within the budget (a crop only).
func BenchmarkPrepareReference(b *testing.B) {
	for _, size := range [][2]int{{4000, 3000}, {1000, 750}} {
		src := RGB{Pix: make([]uint8, 3*size[0]*size[1]), Width: size[0], Height: size[1]}
		for i := range src.Pix {
			src.Pix[i] = uint8(i*7 + i/4099)
		}
		b.Run(itoa(size[0])+"x"+itoa(size[1]), func(b *testing.B) {
			b.SetBytes(int64(len(src.Pix)))
			for b.Loop() {
				if _, err := PrepareReference(src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
