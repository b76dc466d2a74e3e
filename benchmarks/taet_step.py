"""Images per second of one TAET stage-2 training step (PGD-10 + HEL + SGD update), on random data, on the kit's
fast path (lib.speed). For the side-by-side comparison with the reference-style loop use `python -m lib bench`.

    python benchmarks/taet_step.py --arch small_cnn --image-size 8 --channels 1
    python benchmarks/taet_step.py --arch resnet18 --image-size 32 --channels 3 --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import time

import torch

from lib import speed
from lib.attacks import trusted_inputs
from lib.config import TrainConfig
from lib.methods import MethodContext, build_method
from lib.models import create_model
from lib.train import resolve_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=speed.AMP_CHOICES)
    p.add_argument("--channels-last", default="auto", choices=speed.LAYOUT_CHOICES)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    dev = resolve_device(a.device)
    sp = speed.plan(dev, amp=a.amp, channels_last=a.channels_last, compile=a.compile)
    torch.manual_seed(0)
    model = create_model(a.arch, a.num_classes, in_channels=a.channels, image_size=a.image_size).to(dev)
    model, fwd = speed.prepare_model(model, sp)
    method = build_method("taet", {"ce_epochs": 0}, MethodContext(a.num_classes, [1] * a.num_classes, 1, dev))
    opt = speed.make_optimizer(model.parameters(), TrainConfig(), dev)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch_size, a.channels, a.image_size, a.image_size, device=dev)
    y = torch.randint(0, a.num_classes, (a.batch_size,), device=dev)

    def step():
        with trusted_inputs(), sp.autocast():
            out = method.step(fwd, x, y, 1, gen)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    for _ in range(2):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"{a.arch} {a.channels}x{a.image_size}x{a.image_size} batch {a.batch_size} on {dev} "
          f"({torch.get_num_threads()} threads, {sp.describe()}): TAET stage-2 step {a.steps * a.batch_size / dt:.1f} "
          f"img/s")


if __name__ == "__main__":
    main()
