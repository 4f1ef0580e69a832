package imageprep

import "math"

// PIL computes its filter taps with the C library's sin and cos (glibc on
// the Linux wheels), whose results are the correctly rounded values for all
// but a vanishing fraction of arguments. Go's math.Sin and math.Cos are
// within one ulp but differ from them in the last bit for about a quarter of
// the arguments in [-3π, 3π], which would make a tap differ in its last bit.
// sin and cos below evaluate in double-double arithmetic (about 104 bits)
// and round once, so they return the correctly rounded value: the same
// doubles as glibc. They are only used on the small arguments of the
// resampling filters (|x| < 4π; resizeFilter never calls them outside it).

// dd is an unevaluated sum hi+lo with |lo| <= ulp(hi)/2.
type dd struct{ hi, lo float64 }

// twoSum returns s = fl(a+b) and the exact rounding error (Knuth).
func twoSum(a, b float64) (s, e float64) {
	s = a + b
	bb := s - a
	e = (a - (s - bb)) + (b - bb)
	return s, e
}

// twoProd returns p = fl(a*b) and the exact rounding error.
func twoProd(a, b float64) (p, e float64) {
	p = a * b
	return p, math.FMA(a, b, -p)
}

func ddNorm(hi, lo float64) dd {
	s := hi + lo
	return dd{s, lo - (s - hi)}
}

// The products below are rounded explicitly (float64(a*b)) so that no
// compiler fuses them into an FMA: the results are the same on every
// architecture.

func ddAdd(a, b dd) dd {
	s, e := twoSum(a.hi, b.hi)
	t, f := twoSum(a.lo, b.lo)
	n := ddNorm(s, e+t)
	return ddNorm(n.hi, n.lo+f)
}

func ddMul(a, b dd) dd {
	p, e := twoProd(a.hi, b.hi)
	e += float64(a.hi*b.lo) + float64(a.lo*b.hi)
	return ddNorm(p, e)
}

func ddMulF(a dd, b float64) dd {
	p, e := twoProd(a.hi, b)
	e += float64(a.lo * b)
	return ddNorm(p, e)
}

func ddNeg(a dd) dd { return dd{-a.hi, -a.lo} }

// π/2 as a sum of three doubles (161 bits), for exact argument reduction.
var halfPi = [3]float64{
	1.5707963267948966,      // 0x3FF921FB54442D18
	6.123233995736766e-17,   // 0x3C91A62633145C07
	-1.4973849048591698e-33, // 0xB91F1976B7ED8FBC
}

// invFact[n] = 1/n! in double-double, for the Taylor series below.
var invFact = func() [32]dd {
	var f [32]dd
	f[0] = dd{1, 0}
	for n := 1; n < len(f); n++ {
		// f[n] = f[n-1] / n: one Newton step on the double quotient.
		q := f[n-1].hi / float64(n)
		p, e := twoProd(q, float64(n))
		r := (f[n-1].hi - p - e + f[n-1].lo) / float64(n)
		f[n] = ddNorm(q, r)
	}
	return f
}()

// reduce returns k and r = x - k·π/2 (|r| <= π/4) in double-double.
func reduce(x float64) (int, dd) {
	k := math.Round(x / halfPi[0])
	r := dd{x, 0}
	for _, p := range halfPi {
		r = ddAdd(r, ddNeg(ddMulF(dd{p, 0}, k)))
	}
	return int(k), r
}

// sinTaylor and cosTaylor sum the series for |r| <= π/4 up to r^29/29!
// and r^30/30!; the first omitted terms are below 2^-120 of the sums.
func sinTaylor(r dd) dd {
	r2 := ddMul(r, r)
	sum := dd{}
	for n := 29; n >= 1; n -= 2 { // Horner in r²: Σ (-1)^m r^(2m+1)/(2m+1)!
		t := invFact[n]
		if (n/2)%2 == 1 {
			t = ddNeg(t)
		}
		sum = ddAdd(ddMul(sum, r2), t)
	}
	return ddMul(sum, r)
}

func cosTaylor(r dd) dd {
	r2 := ddMul(r, r)
	sum := dd{}
	for n := 30; n >= 0; n -= 2 {
		t := invFact[n]
		if (n/2)%2 == 1 {
			t = ddNeg(t)
		}
		sum = ddAdd(ddMul(sum, r2), t)
	}
	return sum
}

// sin is the correctly rounded sine for |x| < 4π.
func sin(x float64) float64 {
	if x == 0 {
		return x
	}
	k, r := reduce(x)
	var v dd
	switch k & 3 {
	case 0:
		v = sinTaylor(r)
	case 1:
		v = cosTaylor(r)
	case 2:
		v = ddNeg(sinTaylor(r))
	default:
		v = ddNeg(cosTaylor(r))
	}
	return v.hi + v.lo
}

// cos is the correctly rounded cosine for |x| < 4π.
func cos(x float64) float64 {
	k, r := reduce(x)
	var v dd
	switch k & 3 {
	case 0:
		v = cosTaylor(r)
	case 1:
		v = ddNeg(sinTaylor(r))
	case 2:
		v = ddNeg(cosTaylor(r))
	default:
		v = sinTaylor(r)
	}
	return v.hi + v.lo
}
