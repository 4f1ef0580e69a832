package pipeline

import (
	"fmt"
	"math"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// resizeWeights is one output sample's nonzero weights of an antialiased
// linear (triangle) resize.
type resizeWeights struct {
	first int
	w     []float64
}

// triangleResize returns the weights of the exporter's clip_preprocess
// resize (scripts/export_onnx.py triangle_resize_matrix): output o is centred
// at (o+0.5)*s with s = in/out; input i weighs max(0, 1-|i+0.5-c|/r) with
// r = max(s, 1); each row is normalised to sum 1. Downscaling widens the
// triangle (antialiasing, like PIL's BILINEAR).
func triangleResize(in, out int) []resizeWeights {
	scale := float64(in) / float64(out)
	radius := math.Max(scale, 1)
	rows := make([]resizeWeights, out)
	for o := range rows {
		c := (float64(o) + 0.5) * scale
		lo := max(0, int(math.Floor(c-radius-0.5)))
		hi := min(in-1, int(math.Ceil(c+radius-0.5)))
		var ws []float64
		first, sum := -1, 0.0
		for i := lo; i <= hi; i++ {
			wt := 1 - math.Abs(float64(i)+0.5-c)/radius
			if wt <= 0 {
				if first >= 0 {
					break
				}
				continue
			}
			if first < 0 {
				first = i
			}
			ws = append(ws, wt)
			sum += wt
		}
		for k := range ws {
			ws[k] /= sum
		}
		rows[o] = resizeWeights{first: first, w: ws}
	}
	return rows
}

// clipInput converts one packed-RGB image to the safety checker's input,
// CHW float32: centre square crop, triangle resize to size x size on the
// 0..255 values (rows first, then columns, in float64), then
// (v/255 - mean)/std, exactly as the exporter's reference preprocessing.
func clipInput(dst []float32, pix []uint8, w, h, size int, mean, std []float64) {
	s := min(w, h)
	y0, x0 := (h-s)/2, (w-s)/2
	r := triangleResize(s, size)
	rows := make([]float64, size*s) // after the vertical pass: [size][s]
	for c := 0; c < 3; c++ {
		for o, rw := range r {
			acc := rows[o*s : (o+1)*s]
			clear(acc)
			for k, wt := range rw.w {
				src := pix[3*((y0+rw.first+k)*w+x0):]
				for x := 0; x < s; x++ {
					acc[x] += wt * float64(src[3*x+c])
				}
			}
		}
		plane := dst[c*size*size : (c+1)*size*size]
		for y := 0; y < size; y++ {
			row := rows[y*s : (y+1)*s]
			for o, rw := range r {
				v := 0.0
				for k, wt := range rw.w {
					v += wt * row[rw.first+k]
				}
				plane[y*size+o] = float32((v/255 - mean[c]) / std[c])
			}
		}
	}
}

// checkSafety runs the safety classifier on a batch of images and reports
// which are flagged.
func (e *Engine) checkSafety(images [][]uint8, w, h int, clock *time.Duration) ([]bool, error) {
	size := e.man.Safety.InputSize
	n := len(images)
	in, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 3, int64(size), int64(size)))
	if err != nil {
		return nil, fmt.Errorf("safety input: %w", err)
	}
	out, err := ort.NewEmptyTensor[bool](ort.NewShape(int64(n)))
	if err != nil {
		return nil, fmt.Errorf("safety output: %w", err)
	}
	defer destroyAll(in, out)
	data := in.GetData()
	for k, pix := range images {
		clipInput(data[k*3*size*size:(k+1)*3*size*size], pix, w, h, size, e.man.Safety.Mean, e.man.Safety.Std)
	}
	call, err := e.safety.bind(clock, map[string]ort.Value{"clip_input": in},
		map[string]ort.Value{"has_nsfw_concepts": out})
	if err != nil {
		return nil, err
	}
	call.final = true // one safety call per request
	if err := call.run(); err != nil {
		return nil, err
	}
	return append([]bool(nil), out.GetData()...), nil
}
