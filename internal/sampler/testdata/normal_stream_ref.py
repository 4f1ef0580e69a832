"""Independent Python reference of sampler.NormalStream (Philox4x32-10 + Box-Muller).

Run: /work/venv/py/bin/python internal/sampler/testdata/normal_stream_ref.py
It prints the Random123 known answer for counter 0 / key 0 and the first
eight normals of InitialNoise for seeds 0, 42 and -1 and of the CNS stream
(seed 42, step 3) as float32 bit patterns; noise_test.go pins the same values.
"""
import numpy as np
M0,M1,W0,W1=0xD2511F53,0xCD9E8D57,0x9E3779B9,0xBB67AE85
def philox(c,k):
    c=list(c);k=list(k)
    for r in range(10):
        if r: k=[(k[0]+W0)&0xffffffff,(k[1]+W1)&0xffffffff]
        p0=M0*c[0]; p1=M1*c[2]
        c=[(p1>>32)^c[1]^k[0], p1&0xffffffff, (p0>>32)^c[3]^k[1], p0&0xffffffff]
    return c
print([hex(x) for x in philox([0]*4,[0,0])])
def normals(seed, n, stream=0, sub=0):
    u=seed & 0xffffffffffffffff
    key=[u&0xffffffff, u>>32]
    out=[]
    for b in range((n+3)//4):
        r=philox([b&0xffffffff,b>>32,sub,stream],key)
        for a,bb in ((r[0],r[1]),(r[2],r[3])):
            u1=(a+0.5)/2**32; u2=(bb+0.5)/2**32
            rr=np.sqrt(-2*np.log(u1)); th=2*np.pi*u2
            out += [np.float32(rr*np.cos(th)), np.float32(rr*np.sin(th))]
    return np.array(out[:n],dtype=np.float32)
for s in (0,42,-1):
    print(s, " ".join("%#010x"%v for v in normals(s,8).view(np.uint32)))
print(" ".join("%#010x"%v for v in normals(42,8,0x434E53,3).view(np.uint32)))
