"""Process CPU ms per step at 1 thread of the PyTorch peer's CNN workloads (two training
steps, FP32 and INT8 inference; shared/peers/torch_cnn.py, its models and steps unchanged),
the twin of cpu_per_step.sh.
Usage: /usr/bin/python3 scripts/torch_cpu_per_step.py [PEER_SCRIPT]
       /usr/bin/python3 scripts/torch_cpu_per_step.py --lm   (lm_train_b8_n256 of torch_lm.py)"""
import sys, time, torch

if len(sys.argv) > 1 and sys.argv[1] == "--lm":
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    src = open(os.path.join(here, "..", "..", "shared", "peers", "torch_lm.py")).read()
    src = src.replace("T = int(sys.argv[1]) if len(sys.argv) > 1 else 2", "T = 1")
    scope = {"__name__": "peer"}
    exec(src.split("m = GPT()")[0], scope)  # the model definitions, not the peer's timings
    F = torch.nn.functional
    m = scope["GPT"]()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-4)
    x = torch.randint(0, 256, (8, 256)); y = torch.randint(0, 256, (8, 256))
    def lm_step():
        opt.zero_grad(); F.cross_entropy(m(x).view(-1, 256), y.view(-1)).backward(); opt.step()
    for _ in range(2): lm_step()
    t = time.process_time()
    for _ in range(3): lm_step()
    print("torch lm_train_b8_n256 cpu_ms/step %.1f" % ((time.process_time() - t) / 3 * 1e3), file=sys.stderr)
    sys.exit(0)

import os
peer = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peers", "torch_cnn.py")
src = open(peer).read().replace("T = int(sys.argv[1]) if len(sys.argv) > 1 else 2", "T = 1")
for timed in ("bench(step)", "bench(lambda: m(xb), it=10)", "bench(lambda: mq(xb), it=10)", "bench(step3)"):
    src = src.replace(timed, "1.0")  # the peer's own timings are skipped; its JSON lines then mean nothing
scope = {"__name__": "peer"}
exec(src, scope)


def cpu_ms(fn, warm=2, it=10):
    for _ in range(warm):
        fn()
    t = time.process_time()
    for _ in range(it):
        fn()
    return (time.process_time() - t) / it * 1e3


scope["m"].train()
print("torch cnn_train_b128 cpu_ms/step %.1f" % cpu_ms(scope["step"]), file=sys.stderr)
print("torch cnn3d_train_b8_32cube cpu_ms/step %.1f" % cpu_ms(scope["step3"]), file=sys.stderr)
scope["m"].eval()
with torch.no_grad():
    print("torch cnn_infer_b64_fp32 cpu_ms/step %.1f" % cpu_ms(lambda: scope["m"](scope["xb"])), file=sys.stderr)
    print("torch cnn_infer_b64_int8 cpu_ms/step %.1f" % cpu_ms(lambda: scope["mq"](scope["xb"])), file=sys.stderr)
