#!/usr/bin/env python3
"""How much error float32 arithmetic itself leaves in the mLSTM's gradients, and how di
inherits it: the recurrent definition (spec/mlstm.md) with autograd in float32 and in
float64 on MlstmCuda.Float32MatchesFloat64Oracle's shape that fails (S=333, Dk=32,
Dv=96, initial states; inputs drawn as tests/ops/ops_test_util.h does). Prints each
gradient's float32 error, the conditioning of di = k.dk (the kernels' formula), the
stabiliser path's share of di, and how relative noise on dk carries into k.dk.

    .venv/bin/python tools/mlstm_fp32_gradients.py      (CPU, about a minute)

2026-12-07: dk 3.1e-6, di 2.2e-6; |k.dk| / sum|k*dk| = 0.28, noise passes unamplified,
stabiliser path 4 % of di: di's error follows dk's, so a kernel's di beyond 1e-5
means its dk is noisier than float32 needs to be.
"""
import math, torch
torch.manual_seed(102)
B,H,S,Dk,Dv = 2,2,333,32,96
f64 = torch.float64
q = torch.randn(B,H,S,Dk,dtype=f64); k = torch.randn(B,H,S,Dk,dtype=f64); v = torch.randn(B,H,S,Dv,dtype=f64)
i = 2*torch.randn(B,H,S,dtype=f64)-1; f = 2*torch.randn(B,H,S,dtype=f64)+2
C0 = torch.randn(B,H,Dk,Dv,dtype=f64); n0 = torch.randn(B,H,Dk,dtype=f64); m0 = torch.randn(B,H,dtype=f64)
def run(dt):
    leaves = [t.to(dt).clone().requires_grad_() for t in (q,k,v,i,f,C0,n0,m0)]
    Q,K,V,I,Fg,C,n,m = leaves
    hs=[]
    for t in range(S):
        lf = torch.nn.functional.logsigmoid(Fg[...,t])
        mn = torch.maximum(lf+m, I[...,t])
        a = torch.exp(lf+m-mn); e = torch.exp(I[...,t]-mn)
        C = a[...,None,None]*C + e[...,None,None]*K[...,t,:,None]*V[...,t,None,:]
        n = a[...,None]*n + e[...,None]*K[...,t,:]
        qs = Q[...,t,:]/math.sqrt(Dk)
        den = torch.maximum((qs*n).sum(-1).abs(), torch.exp(-mn)) + 1e-6
        hs.append(torch.einsum('bhd,bhde->bhe', qs, C)/den[...,None]); m = mn
    h = torch.stack(hs,2)
    g = torch.Generator().manual_seed(7)
    Gh = torch.randn(h.shape, generator=g, dtype=f64).to(dt)
    GC = torch.randn(C.shape, generator=g, dtype=f64).to(dt)
    loss = (h*Gh).sum() + (C*GC).sum()
    return torch.autograd.grad(loss, leaves), leaves
g64,_ = run(f64); g32,l32 = run(torch.float32)
rel = lambda a,b: ((a.double()-b).norm()/b.norm()).item()
names = "q k v i f C0 n0 m0".split()
for nm,a,b in zip(names,g32,g64): print(f"d{nm}: fp32 recurrent autograd rel err {rel(a,b):.2e}")
kdk64 = (k*g64[1]).sum(-1); kdk32 = (k.float()*g32[1]).sum(-1)
print(f"k.dk: fp32 rel err {rel(kdk32,kdk64):.2e}; |k.dk| / sum|k*dk| = {(kdk64.norm()/( (k*g64[1]).abs().sum(-1)).norm()).item():.3f}")
print(f"di - k.dk (the stabiliser path) norm share: {((g64[3]-kdk64).norm()/g64[3].norm()).item():.3e}")
# perturb dk by relative noise eps and see di error
for eps in (1e-7, 1e-6):
    noisy = g64[1]*(1+eps*torch.randn_like(g64[1]))
    print(f"dk with rel noise {eps:.0e}: dk err {rel(noisy,g64[1]):.1e} -> k.dk err {rel((k*noisy).sum(-1),kdk64):.1e}")
