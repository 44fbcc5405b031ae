"""Tests for rxsweep.models (CPU, small inputs)."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn as nn

from rxsweep.models import (
    DANN,
    DOMAIN_LABELS,
    DomainHead,
    GradientReversal,
    adapt_input_conv,
    create_backbone,
    domain_loss,
    get_schedule,
    grad_reverse,
    list_backbones,
    list_schedules,
    load_pretrained,
    register_backbone,
)
from rxsweep.models.dann import adversary_domain_loss, class_balance_weights
from rxsweep.models.registry import Registry

# torchvision's published parameter counts (1000-class ImageNet heads); timm's for ViT-S/16-224.
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "densenet121": 7_978_856,
    "efficientnet_b0": 5_288_548,
    "vit_small": 22_050_664,
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def small_kwargs(name: str) -> dict:
    return {"img_size": 32} if name.startswith("vit") else {}


# --------------------------------------------------------------------------- gradient reversal

@pytest.mark.parametrize("lambd", [0.0, 0.1, 0.5, 1.0, 2.0, 3.7])
def test_grad_reverse_exact(lambd):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 7, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.randn(4, 7, dtype=torch.float64, generator=g)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.equal(x.grad, -lambd * upstream)


def test_gradient_reversal_module_set_lambda():
    grl = GradientReversal(1.0)
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for lam in (0.25, 0.0, 1.5):
        grl.set_lambda(lam)
        x.grad = None
        grl(x).sum().backward()
        assert torch.equal(x.grad, torch.full_like(x, -lam))
    with pytest.raises(TypeError):
        grl.set_lambda(torch.tensor(1.0))
    with pytest.raises(ValueError):
        grl.set_lambda(float("nan"))


# --------------------------------------------------------------------------- schedules

GANIN_HALF = 2 / (1 + math.exp(-5)) - 1  # 0.98661...
GANIN_ONE = 2 / (1 + math.exp(-10)) - 1  # 0.99991...


@pytest.mark.parametrize(
    "name, kw, expected",
    [
        ("constant", {}, (2.0, 2.0, 2.0)),
        ("ganin", {}, (0.0, 2.0 * GANIN_HALF, 2.0 * GANIN_ONE)),
        ("linear", {}, (0.0, 2.0, 2.0)),
        ("linear", {"warmup": 1.0}, (0.0, 1.0, 2.0)),
        ("step", {}, (0.0, 2.0, 2.0)),
        ("step", {"p0": 0.75}, (0.0, 0.0, 2.0)),
    ],
)
def test_schedule_values(name, kw, expected):
    f = get_schedule(name)
    got = tuple(f(p, 2.0, **kw) for p in (0.0, 0.5, 1.0))
    assert got == pytest.approx(expected, abs=1e-12)


def test_schedule_hand_numbers():
    assert GANIN_HALF == pytest.approx(0.9866, abs=1e-4)
    assert get_schedule("ganin")(0.5, 1.0) == pytest.approx(0.98661429815, abs=1e-10)
    assert get_schedule("linear")(0.125, 1.0) == pytest.approx(0.5)  # half of the 0.25 warm-up
    assert get_schedule("step")(0.4999, 1.0) == 0.0


@pytest.mark.parametrize("name", ["constant", "ganin", "linear", "step"])
@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan")])
def test_schedule_rejects_bad_progress(name, p):
    with pytest.raises(ValueError, match="p"):
        get_schedule(name)(p, 1.0)


def test_schedule_registry():
    assert set(list_schedules()) >= {"constant", "ganin", "linear", "step"}
    with pytest.raises(ValueError, match=r"unknown schedule 'cosine'; known: \[.*'ganin'"):
        get_schedule("cosine")


# --------------------------------------------------------------------------- backbones

@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("in_chans", [3, 6])
def test_backbone_forward_features(name, in_chans):
    torch.manual_seed(0)
    m = create_backbone(name, in_chans, **small_kwargs(name)).eval()
    with torch.no_grad():
        y = m.forward_features(torch.randn(2, in_chans, 32, 32))
    assert y.shape == (2, m.num_features)
    assert torch.isfinite(y).all()
    w = m.get_parameter(f"{m.first_conv}.weight")
    assert w.shape[1] == in_chans


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published(name):
    m = create_backbone(name, 3)  # ViT at its native 224 so pos_embed has 197 tokens
    with_head = n_params(m) + m.num_features * 1000 + 1000
    assert with_head == PUBLISHED[name]


def test_torchvision_key_names():
    keys = {n: set(create_backbone(n, 3, **small_kwargs(n)).state_dict()) for n in PUBLISHED}
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
            "layer4.1.bn2.bias"} <= keys["resnet18"]
    assert {"layer1.0.downsample.0.weight", "layer4.2.conv3.weight",
            "layer2.0.downsample.1.num_batches_tracked"} <= keys["resnet50"]
    assert {"features.conv0.weight", "features.norm0.weight",
            "features.denseblock1.denselayer1.norm1.weight",
            "features.denseblock4.denselayer16.conv2.weight",
            "features.transition3.conv.weight", "features.norm5.running_mean"} <= keys["densenet121"]
    assert {"features.0.0.weight", "features.0.1.running_mean",
            "features.1.0.block.0.0.weight", "features.1.0.block.1.fc1.weight",
            "features.2.0.block.3.1.weight", "features.7.0.block.2.fc2.bias",
            "features.8.0.weight"} <= keys["efficientnet_b0"]
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
            "blocks.11.mlp.fc2.bias", "blocks.0.norm1.weight", "norm.weight"} <= keys["vit_small"]
    assert len(keys["densenet121"]) == 727 - 2  # torchvision's 727 minus classifier w/b
    assert len(keys["resnet18"]) == 122 - 2  # torchvision's 122 minus fc w/b


def test_cnn_small_is_small():
    """Its speed is measured by bench/train_throughput.py, not asserted on a shared machine."""
    m = create_backbone("cnn-small", 6)
    assert 100_000 <= n_params(m) <= 300_000
    m(torch.randn(16, 6, 64, 64)).sum().backward()


def test_vit_interpolates_pos_embed():
    torch.manual_seed(0)
    m = create_backbone("vit_small", 3, img_size=32, depth=2).eval()
    assert m.pos_embed.shape == (1, 1 + 4, 384)
    with torch.no_grad():
        assert m.forward_features(torch.randn(2, 3, 64, 48)).shape == (2, 384)
    with pytest.raises(ValueError, match="multiple of patch"):
        m.forward_features(torch.randn(1, 3, 40, 32))


# --------------------------------------------------------------------------- weights

@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_adapt_input_conv(dtype):
    w = torch.randn(8, 3, 5, 5).to(dtype)
    before = w.clone()
    six = adapt_input_conv(6, w)
    assert six.dtype == dtype and six.shape == (8, 6, 5, 5)
    assert torch.equal(six, (torch.cat([w, w], 1).float() * 0.5).to(dtype))
    five = adapt_input_conv(5, w)
    assert torch.equal(five, (torch.cat([w, w[:, :2]], 1).float() * 0.6).to(dtype))
    one = adapt_input_conv(1, w)
    assert one.dtype == dtype and one.shape == (8, 1, 5, 5)
    assert torch.equal(one, w.float().sum(1, keepdim=True).to(dtype))
    three = adapt_input_conv(3, w)
    assert torch.equal(three, w) and three.data_ptr() != w.data_ptr()
    assert torch.equal(w, before)  # pure: input untouched


def test_adapt_input_conv_preserves_response_to_grey_input():
    # The reason for 3/C: a constant image on all C channels gives the RGB model's response.
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    x3 = torch.full((1, 3, 8, 8), 0.7, dtype=torch.float64)
    x6 = torch.full((1, 6, 8, 8), 0.7, dtype=torch.float64)
    a = nn.functional.conv2d(x3, w)
    b = nn.functional.conv2d(x6, adapt_input_conv(6, w))
    torch.testing.assert_close(a, b)


def test_adapt_input_conv_rejects():
    with pytest.raises(ValueError):
        adapt_input_conv(0, torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match="RGB"):
        adapt_input_conv(6, torch.randn(2, 4, 3, 3))
    with pytest.raises(ValueError, match="4-D"):
        adapt_input_conv(6, torch.randn(2, 3))


def _resnet18_torchvision_like_state_dict() -> dict:
    torch.manual_seed(1)
    src = create_backbone("resnet18", 3)
    fc = nn.Linear(src.num_features, 1000)
    sd = dict(src.state_dict())
    sd["fc.weight"], sd["fc.bias"] = fc.weight.detach(), fc.bias.detach()
    return sd


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_load_pretrained_adapts_and_drops_fc(tmp_path, wrap):
    sd = _resnet18_torchvision_like_state_dict()
    path = tmp_path / "r18.pth"
    torch.save(sd if wrap is None else {wrap: sd, "epoch": 3}, path)
    torch.manual_seed(2)
    dst = create_backbone("resnet18", 6)
    res = load_pretrained(dst, path, 6)
    assert res.missing_keys == [] and res.unexpected_keys == []
    got = dst.state_dict()
    assert torch.equal(got["conv1.weight"], adapt_input_conv(6, sd["conv1.weight"]))
    assert "fc.weight" not in got
    for k, v in got.items():
        if k != "conv1.weight":
            assert torch.equal(v, sd[k]), k


def test_create_backbone_with_checkpoint(tmp_path):
    sd = _resnet18_torchvision_like_state_dict()
    torch.save(sd, tmp_path / "r18.pth")
    m = create_backbone("resnet18", 6, checkpoint_path=str(tmp_path / "r18.pth"))
    assert torch.equal(m.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    with pytest.raises(ValueError, match="missing"):  # wrong architecture, not silently ignored
        create_backbone("cnn-small", 3, checkpoint_path=str(tmp_path / "r18.pth"))


def test_load_pretrained_vit_resamples_pos_embed(tmp_path):
    src = create_backbone("vit_small", 3, img_size=64, depth=1)
    sd = dict(src.state_dict())
    sd["head.weight"] = torch.zeros(10, 384)
    torch.save(sd, tmp_path / "vit.pth")
    dst = create_backbone("vit_small", 6, img_size=32, depth=1)
    res = load_pretrained(dst, tmp_path / "vit.pth", 6)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert dst.pos_embed.shape == (1, 5, 384)
    assert torch.equal(dst.cls_token, src.cls_token)


def test_load_pretrained_rejects_non_checkpoints(tmp_path):
    m = create_backbone("cnn-small", 3)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="junk.pth"):
        load_pretrained(m, junk, 3)
    evil = tmp_path / "evil.pth"  # an arbitrary object: weights_only=True must refuse it
    with open(evil, "wb") as f:
        pickle.dump(Registry("x"), f, protocol=2)
    with pytest.raises(ValueError, match="evil.pth"):
        load_pretrained(m, evil, 3)
    notsd = tmp_path / "list.pth"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(ValueError, match="list.pth"):
        load_pretrained(m, notsd, 3)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(m, tmp_path / "nope.pth", 3)


# --------------------------------------------------------------------------- registry

def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("resnet18")(lambda in_chans=3: None)
    reg = Registry("thing")
    reg.register("a")(len)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(len)
    assert reg.get("a") is len


def test_registry_unknown_lists_known():
    with pytest.raises(ValueError) as e:
        create_backbone("resnet19", 3)
    msg = str(e.value)
    assert msg.startswith("unknown backbone 'resnet19'; known: [")
    for n in ("cnn-small", "resnet18", "resnet50", "densenet121", "efficientnet_b0", "vit_small"):
        assert repr(n) in msg


# --------------------------------------------------------------------------- DANN

def _dann(domain_label, embedding_dim=None, n_domains=5, dropout=0.0):
    torch.manual_seed(0)
    bb = create_backbone("cnn-small", 6)
    return DANN(bb, n_classes=11, domain_label=domain_label, n_domains=n_domains,
                embedding_dim=embedding_dim, domain_width=32, domain_depth=2,
                domain_dropout=dropout)


@pytest.mark.parametrize("domain_label", DOMAIN_LABELS)
@pytest.mark.parametrize("embedding_dim", [None, 16])
def test_dann_shapes(domain_label, embedding_dim):
    m = _dann(domain_label, embedding_dim)
    out = m(torch.randn(4, 6, 32, 32))
    assert set(out) == {"logits", "domain_logits", "embedding"}
    assert out["logits"].shape == (4, 11)
    assert out["embedding"].shape == (4, embedding_dim or m.backbone.num_features)
    if domain_label == "none":
        assert m.domain_head is None and out["domain_logits"] is None
    else:
        assert out["domain_logits"].shape == (4, 5)


def test_dann_validation():
    with pytest.raises(ValueError, match="known"):
        _dann("well")
    with pytest.raises(ValueError, match="n_domains"):
        _dann("plate", n_domains=None)
    assert _dann("none", n_domains=None).domain_head is None


@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_dann_reverses_gradient_into_backbone(lam):
    m = _dann("experiment", embedding_dim=16).double()
    x = torch.randn(6, 6, 16, 16, dtype=torch.float64)
    d = torch.tensor([0, 1, 2, 3, 4, 0])

    def backbone_grads():
        m.zero_grad(set_to_none=True)
        domain_loss(m(x)["domain_logits"], d, smoothing=0.1).backward()
        return [p.grad.clone() for p in m.backbone.parameters()], \
            [p.grad.clone() for p in m.domain_head.parameters()]

    m.set_lambda(lam)
    bb_rev, head_rev = backbone_grads()
    grl = m.grl
    m.grl = nn.Identity()  # GRL removed: the plain domain-classification gradient
    bb_plain, head_plain = backbone_grads()
    m.grl = grl
    for a, b in zip(bb_rev, bb_plain):
        torch.testing.assert_close(a, -lam * b, rtol=1e-9, atol=1e-12)
    assert any(b.abs().sum() > 0 for b in bb_plain)
    for a, b in zip(head_rev, head_plain):  # the domain head itself is not reversed
        assert torch.equal(a, b)


def test_dann_label_loss_not_reversed():
    m = _dann("plate")
    m.set_lambda(0.0)
    assert m.lambd == 0.0
    out = m(torch.randn(4, 6, 16, 16))
    out["logits"].sum().backward()
    assert m.backbone.features[0].conv.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- heads / loss

def test_domain_head_shapes():
    h = DomainHead(10, 3, width=8, depth=0)
    assert h(torch.randn(2, 10)).shape == (2, 3)
    assert len([m for m in h.modules() if isinstance(m, nn.Linear)]) == 1
    h = DomainHead(10, 3, width=8, depth=3, dropout=0.2)
    assert len([m for m in h.modules() if isinstance(m, nn.Linear)]) == 4
    with pytest.raises(ValueError, match="n_domains"):
        DomainHead(10, 1)


def test_domain_loss_els():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 2, 3])
    ce = nn.functional.cross_entropy(logits, target)
    assert torch.equal(domain_loss(logits, target, 0.0), ce)
    # ELS target: 1 - eps on the true domain, eps / (K - 1) elsewhere (hand-built).
    eps = 0.3
    logp = torch.log_softmax(logits, 1)
    soft = torch.full((5, 4), eps / 3, dtype=torch.float64)
    soft[torch.arange(5), target] = 1 - eps
    torch.testing.assert_close(domain_loss(logits, target, eps), -(soft * logp).sum(1).mean())
    # PyTorch's uniform label smoothing e equals ELS with eps = e * (K - 1) / K.
    torch.testing.assert_close(
        domain_loss(logits, target, 0.2 * 3 / 4),
        nn.functional.cross_entropy(logits, target, label_smoothing=0.2),
    )
    with pytest.raises(ValueError, match="smoothing"):
        domain_loss(logits, target, 1.0)


# --------------------------------------------------------------------------- CDANN class balance

# 8 sites the domain loss sees: 6 of class 4 (controls, say) and 2 of class 9, 3 domains.
CB_LOGITS = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.5, -0.5, 0.0], [-1.0, 1.0, 2.0],
             [0.0, 0.0, 0.0], [3.0, 1.0, -2.0], [0.5, 2.5, -0.5], [-2.0, 0.0, 1.0]]
CB_DOMAINS = [0, 2, 1, 2, 0, 1, 1, 0]
CB_LABELS = [4, 4, 4, 4, 4, 4, 9, 9]


def _hand_ce(row, target):
    return math.log(sum(math.exp(v) for v in row)) - row[target]


def test_cdann_domain_loss_is_class_balanced_by_hand():
    ce = [_hand_ce(r, d) for r, d in zip(CB_LOGITS, CB_DOMAINS)]
    # Each present class carries half: class 4's sites 1 / (6 * 2) each, class 9's 1 / (2 * 2).
    expected = sum(ce[:6]) / 12 + sum(ce[6:]) / 4
    logits = torch.tensor(CB_LOGITS, dtype=torch.float64)
    domains, labels = torch.tensor(CB_DOMAINS), torch.tensor(CB_LABELS)
    got = adversary_domain_loss(logits, domains, labels, "cdann")
    assert got.item() == pytest.approx(expected, rel=1e-12)
    assert abs(expected - sum(ce) / 8) > 0.05  # the weighting matters on this batch
    w = class_balance_weights(labels, torch.float64)
    assert w.sum().item() == pytest.approx(1.0, rel=1e-12)
    # DomainBed divides by the one-hot width (largest label + 1 = 10), not the 2 classes present.
    y_counts = nn.functional.one_hot(labels).sum(dim=0)
    domainbed = 1.0 / (y_counts[labels] * y_counts.shape[0]).double()
    torch.testing.assert_close(w, domainbed * 10 / 2)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cdann_domain_loss_with_equal_class_counts_is_the_mean(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(8, 3, dtype=torch.float64)
    domains = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    labels = torch.tensor([7, 7, 2, 2, 5, 5, 0, 0])
    got = adversary_domain_loss(logits, domains, labels, "cdann", smoothing)
    torch.testing.assert_close(got, domain_loss(logits, domains, smoothing))
    if smoothing == 0.0:
        torch.testing.assert_close(got, nn.functional.cross_entropy(logits, domains))


def test_dann_domain_loss_stays_the_plain_mean():
    logits = torch.tensor(CB_LOGITS, dtype=torch.float64)
    domains, labels = torch.tensor(CB_DOMAINS), torch.tensor(CB_LABELS)
    ce = [_hand_ce(r, d) for r, d in zip(CB_LOGITS, CB_DOMAINS)]
    got = adversary_domain_loss(logits, domains, labels, "dann", 0.2)
    assert torch.equal(got, domain_loss(logits, domains, 0.2))
    plain = adversary_domain_loss(logits, domains, labels, "dann")
    assert plain.item() == pytest.approx(sum(ce) / 8, rel=1e-12)


def test_cdann_domain_loss_rejects_sites_without_a_class():
    logits = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="labels >= 0"):
        adversary_domain_loss(logits, torch.tensor([0, 1, 0]), torch.tensor([1, -1, 1]), "cdann")
    with pytest.raises(ValueError, match="unknown adversary"):
        adversary_domain_loss(logits, torch.tensor([0, 1, 0]), torch.tensor([1, 1, 1]), "dan")
