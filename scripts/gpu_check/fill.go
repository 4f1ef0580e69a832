package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/kleinserve/kleinserve/internal/sampler"
	"github.com/x448/float16"
)

// SkeletonFile is the name of a graph skeleton's index, written by
// scripts/export_onnx.py --skeleton next to the graphs.
const SkeletonFile = "skeleton.json"

// Skeleton lists the external tensors a skeleton's graphs reference but
// whose data it does not carry.
type Skeleton struct {
	Format  int              `json:"format"`
	Tensors []SkeletonTensor `json:"tensors"`
}

// SkeletonTensor is one external tensor: where it goes and the mean and
// standard deviation of the exported weights it stands for.
type SkeletonTensor struct {
	Graph  string  `json:"graph"`
	File   string  `json:"file"`
	Name   string  `json:"name"`
	DType  string  `json:"dtype"`
	Shape  []int64 `json:"shape"`
	Offset int64   `json:"offset"`
	Length int64   `json:"length"`
	Mean   float64 `json:"mean"`
	Std    float64 `json:"std"`
}

// dtypeSize is the byte size of each element type a skeleton may hold.
var dtypeSize = map[string]int64{"float32": 4, "float16": 2, "bfloat16": 2}

// validate checks a tensor's entry against its own shape and type.
func (t SkeletonTensor) validate() error {
	size, ok := dtypeSize[t.DType]
	if !ok {
		return fmt.Errorf("tensor %s: dtype %q is not float32, float16 or bfloat16", t.Name, t.DType)
	}
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("tensor %s: negative dimension in %v", t.Name, t.Shape)
		}
		n *= d
	}
	if n*size != t.Length || t.Offset < 0 {
		return fmt.Errorf("tensor %s: %v %s is %d bytes, entry says %d at %d", t.Name, t.Shape, t.DType, n*size, t.Length, t.Offset)
	}
	if t.File == "" || filepath.Base(t.File) != t.File {
		return fmt.Errorf("tensor %s: file %q must be a plain file name", t.Name, t.File)
	}
	return nil
}

// fillSkeleton writes every external data file of the skeleton in dir: each
// tensor gets N(mean, std²) values from a generator seeded by seed and the
// tensor's graph and name, so the same skeleton and seed give the same bytes
// on every machine.
func fillSkeleton(ctx context.Context, dir string, seed uint64) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, SkeletonFile))
	if err != nil {
		return 0, err
	}
	var sk Skeleton
	if err := json.Unmarshal(b, &sk); err != nil {
		return 0, fmt.Errorf("%s: %w", SkeletonFile, err)
	}
	if sk.Format != 1 {
		return 0, fmt.Errorf("%s: format %d, want 1", SkeletonFile, sk.Format)
	}
	files := map[string]*os.File{}
	sizes := map[string]int64{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, t := range sk.Tensors {
		if err := t.validate(); err != nil {
			return 0, err
		}
		sizes[t.File] = max(sizes[t.File], t.Offset+t.Length)
	}
	var total int64
	for name, size := range sizes {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return 0, err
		}
		files[name] = f
		if err := f.Truncate(size); err != nil {
			return 0, err
		}
		total += size
	}
	work := make(chan SkeletonTensor)
	errs := make(chan error, len(sk.Tensors)+1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range work {
				if err := ctx.Err(); err != nil {
					errs <- err
					continue
				}
				if err := fillTensor(files[t.File], t, seed); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, t := range sk.Tensors {
		work <- t
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return total, nil
}

// fillTensor writes one tensor in chunks of at most 1 Mi elements.
func fillTensor(f *os.File, t SkeletonTensor, seed uint64) error {
	h := fnv.New64a()
	h.Write([]byte(t.Graph + "/" + t.Name))
	rng := rand.New(rand.NewPCG(seed, h.Sum64()))
	size := dtypeSize[t.DType]
	n := t.Length / size
	buf := make([]byte, min(n, 1<<20)*size)
	for done := int64(0); done < n; {
		k := min(n-done, int64(len(buf))/size)
		for i := range k {
			v := float32(t.Mean + t.Std*rng.NormFloat64())
			switch t.DType {
			case "float32":
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			case "float16":
				binary.LittleEndian.PutUint16(buf[2*i:], float16.Fromfloat32(v).Bits())
			case "bfloat16":
				binary.LittleEndian.PutUint16(buf[2*i:], sampler.BF16Bits(v))
			}
		}
		if _, err := f.WriteAt(buf[:k*size], t.Offset+done*size); err != nil {
			return fmt.Errorf("tensor %s: %w", t.Name, err)
		}
		done += k
	}
	return nil
}

func fillCmd(ctx context.Context, args []string, out io.Writer) (int, error) {
	fs := flag.NewFlagSet("fill", flag.ContinueOnError)
	dir := fs.String("skeleton", "", "model directory holding skeleton.json")
	seed := fs.Uint64("seed", 0, "seed of the values")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if *dir == "" {
		return 2, fmt.Errorf("fill: -skeleton is required")
	}
	start := time.Now()
	n, err := fillSkeleton(ctx, *dir, *seed)
	if err != nil {
		return 1, err
	}
	fmt.Fprintf(out, "filled %s: %.2f GB in %.1f s\n", *dir, float64(n)/1e9, time.Since(start).Seconds())
	return 0, nil
}
