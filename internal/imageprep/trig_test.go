package imageprep

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// Correctly rounded values (mpmath at 300 bits). The first odd ones are
// arguments where glibc's sin is off by one ulp: these are the values PIL
// would get from a correctly rounding C library.
func TestSinCosTable(t *testing.T) {
	for _, c := range []struct{ x, sin, cos float64 }{
		{1e-300, 1e-300, 1.0},
		{0.5, 0.479425538604203, 0.8775825618903728},
		{1.0, 0.8414709848078965, 0.5403023058681398},
		{3.4716194141286563, -0.32406834488173747, -0.9460336716235904},
		{-3.698242724996933, 0.5283449786188225, -0.8490297895646983},
		{-3.2693409360755727, 0.12740109858648055, -0.991851279214257},
		{6.425432404325631, 0.14176787200316324, 0.9898999295220172},
		{3.141592653589793, 1.2246467991473532e-16, -1.0},
		{9.42477796076938, 3.6739403974420594e-16, -1.0},
		{2.356194490192345, 0.7071067811865476, -0.7071067811865475},
		{1e-08, 1e-08, 1.0},
		{-7.0, -0.6569865987187891, 0.7539022543433046},
	} {
		if got := sin(c.x); got != c.sin {
			t.Errorf("sin(%v) = %v, want %v", c.x, got, c.sin)
		}
		if got := cos(c.x); got != c.cos {
			t.Errorf("cos(%v) = %v, want %v", c.x, got, c.cos)
		}
	}
}

// bigPi is π to 260 bits.
var bigPi, _, _ = big.ParseFloat("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899862803482534211706798214808651328230664709384460955058223172535940812848111745028410270193852110555964462294895493038196", 10, 300, big.ToNearestEven)

// bigSin is sin(x) by its Taylor series at 300 bits, then rounded once: the
// correctly rounded value (the series loses at most ~20 bits to
// cancellation for |x| < 4π). shift adds a quarter turn (cos = sin(x+π/2)).
func bigSin(x float64, quarter bool) float64 {
	const prec = 300
	v := new(big.Float).SetPrec(prec).SetFloat64(x)
	if quarter {
		half := new(big.Float).SetPrec(prec).Quo(bigPi, big.NewFloat(2))
		v.Add(v, half)
	}
	v2 := new(big.Float).SetPrec(prec).Mul(v, v)
	term := new(big.Float).SetPrec(prec).Set(v)
	sum := new(big.Float).SetPrec(prec).Set(v)
	eps := new(big.Float).SetMantExp(big.NewFloat(1), -280)
	for n := 1; ; n++ {
		term.Mul(term, v2)
		term.Quo(term, big.NewFloat(float64((2*n)*(2*n+1))))
		term.Neg(term)
		sum.Add(sum, term)
		if new(big.Float).Abs(term).Cmp(eps) < 0 && n > 10 {
			break
		}
	}
	f, _ := sum.Float64()
	return f
}

// TestSinCosCorrectlyRounded checks random arguments over the filters'
// whole range, and arguments next to multiples of π/2 where the reduction
// cancels, against the 300-bit series.
func TestSinCosCorrectlyRounded(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := range n {
		x := (r.Float64()*2 - 1) * 3 * math.Pi
		if i%4 == 0 {
			x = float64(r.IntN(13)-6)*math.Pi/2 + (r.Float64()-0.5)*math.Ldexp(1, -r.IntN(40))
		}
		if want := bigSin(x, false); sin(x) != want {
			t.Fatalf("sin(%v) = %v, want %v", x, sin(x), want)
		}
		y := r.Float64() * math.Pi
		if want := bigSin(y, true); cos(y) != want {
			t.Fatalf("cos(%v) = %v, want %v", y, cos(y), want)
		}
	}
}
