"""Images per second of one TAET stage-2 training step (PGD-10 + HEL + SGD update), on random data.

    python benchmarks/taet_step.py --arch small_cnn --image-size 8 --channels 1
    python benchmarks/taet_step.py --arch resnet18 --image-size 32 --channels 3 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch

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
    a = p.parse_args()
    dev = resolve_device(a.device)
    torch.manual_seed(0)
    model = create_model(a.arch, a.num_classes, in_channels=a.channels, image_size=a.image_size).to(dev)
    method = build_method("taet", {"ce_epochs": 0}, MethodContext(a.num_classes, [1] * a.num_classes, 1, dev))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(a.batch_size, a.channels, a.image_size, a.image_size, device=dev)
    y = torch.randint(0, a.num_classes, (a.batch_size,), device=dev)

    def step():
        out = method.step(model, x, y, 1, gen)
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
          f"({torch.get_num_threads()} threads): TAET stage-2 step {a.steps * a.batch_size / dt:.1f} img/s")


if __name__ == "__main__":
    main()
