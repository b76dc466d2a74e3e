"""PGD-AT + HE: the margin loss by hand, the cosine head, the official weight projection, a trained run
reloaded (the contract every method keeps: test_methods_contract.py)."""

import math

import torch
import torch.nn.functional as F

from lib.core.methods import MethodContext, build_method
from lib.core.methods.he import CosineLinear, he_loss
from lib.core.models import create_model
from lib.core.train import load_run, train_run


def test_he_loss_by_hand():
    # cos θ of 2 samples over 3 classes; s = 2, m = 0.25: logits handed to the loss are s·cos θ.
    cos = torch.tensor([[0.5, 0.1, -0.2], [0.0, 0.8, 0.3]])
    y = torch.tensor([0, 1])
    # sample 1: 2·(cos − 0.25·onehot(0)) = [0.5, 0.2, −0.4]; CE = log(e^0.5 + e^0.2 + e^−0.4) − 0.5 = 0.7642522
    # sample 2: 2·(cos − 0.25·onehot(1)) = [0.0, 1.1, 0.6];  CE = log(1 + e^1.1 + e^0.6) − 1.1     = 0.6623795
    assert torch.allclose(he_loss(2.0 * cos, y, s=2.0, m=0.25, reduction="none"), torch.tensor([0.7642522, 0.6623795]))
    assert math.isclose(float(he_loss(2.0 * cos, y, s=2.0, m=0.25)), 0.7133159, rel_tol=1e-6)
    # without a margin it is the plain CE of the scaled logits (the official attack's objective, cm=0)
    assert torch.allclose(he_loss(2.0 * cos, y, s=2.0, m=0.0), F.cross_entropy(2.0 * cos, y))


def test_cosine_head_by_hand():
    head = CosineLinear(2, 3, s=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
    # f = [3, 4] -> [0.6, 0.8]; rows -> [1, 0], [0, 1], [1, 1]/√2: cos = [0.6, 0.8, 1.4/√2 = 0.9899495]
    assert torch.allclose(head(torch.tensor([[3.0, 4.0]])), 10.0 * torch.tensor([[0.6, 0.8, 0.9899495]]))
    assert head.bias is None
    head.project_()
    assert torch.allclose(head.weight.norm(dim=1), torch.ones(3))


def test_prepare_model_swaps_the_classifier_and_step_projects_the_weight():
    torch.manual_seed(0)
    ctx = MethodContext(10, [10] * 10, 2, torch.device("cpu"))
    method = build_method("he", {}, ctx)
    model = method.prepare_model(create_model("small_cnn", 10, in_channels=1, width=8))
    head = model.classifier
    assert isinstance(head, CosineLinear) and head.s == 15.0 and head.bias is None
    assert method.prepare_model(model).classifier is head  # idempotent
    x = torch.rand(6, 1, 8, 8)
    f = model.features(x)
    expected = 15.0 * F.normalize(f, dim=1) @ F.normalize(head.weight, dim=1).T
    assert torch.allclose(model(x), expected, atol=1e-5)

    y = torch.arange(6)
    with torch.no_grad():
        head.weight.mul_(3.0)  # off the sphere, as after an optimizer step
    out = method.step(model, x, y, 0, torch.Generator().manual_seed(0))
    assert torch.allclose(head.weight.norm(dim=1), torch.ones(10), atol=1e-6)  # projected, as the official forward
    assert out.logits.shape == (6, 10) and torch.isfinite(out.loss)


def test_head_weight_gradient_is_the_plain_linear_one():
    # Official: weight.data is overwritten by its normalised copy, so dL/dW is that of F.linear with the
    # unit weight, not projected onto the sphere's tangent.
    torch.manual_seed(1)
    head = CosineLinear(4, 3, s=15.0)
    head.project_()
    f, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    he_loss(head(f), y, 15.0, 0.2).backward()
    w = head.weight.detach().clone().requires_grad_(True)
    g_plain = torch.autograd.grad(he_loss(15.0 * F.linear(F.normalize(f, dim=1), w), y, 15.0, 0.2), w)[0]
    assert torch.allclose(head.weight.grad, g_plain, atol=1e-6)
    radial = (g_plain * w.detach()).sum(1)
    assert radial.abs().max() > 1e-4  # a projected gradient would have no radial part


def test_a_trained_run_reloads_with_its_cosine_head(tmp_path, small_cfg):
    res = train_run(small_cfg(tmp_path, "he", epochs=2, max_train=320), verbose=False)
    cfg, model, data, method, _ = load_run(res.run_dir, device="cpu")
    assert isinstance(model.classifier, CosineLinear)
    x = data.test_x[:32].float() / 255.0
    res.model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), res.model(x), atol=1e-5)
