"""Process CPU ms per training step at 1 thread of the PyTorch peer's two training workloads
(shared/peers/torch_cnn.py, its models and steps unchanged), the twin of cpu_per_step.sh.
Usage: OPENBLAS_CORETYPE=SkylakeX /usr/bin/python3 scripts/torch_cpu_per_step.py [PEER_SCRIPT]"""
import sys, time, torch

peer = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/peers/torch_cnn.py"
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
