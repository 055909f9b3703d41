"""Semantic fidelity metrics: classifier agreement and semantic cosine, against direct computations."""
import torch
import torch.nn.functional as F

from mmtok.metrics.semantic import ClassifierAgreement, SemanticCosine


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_classifier_agreement_counts_equal_top1():
    net = Lin()
    x = torch.rand(64, 3, 4, 4) * 2 - 1
    y = x.clone()
    y[:16] = torch.rand(16, 3, 4, 4) * 2 - 1  # a quarter replaced by other images
    m = ClassifierAgreement(net)
    m.update(x[:40], y[:40])
    m.update(x[40:], y[40:])
    want = (net(x).argmax(-1) == net(y).argmax(-1)).double().mean()
    assert torch.isclose(m.compute(), want) and 0.7 < float(want) < 1.0


def test_semantic_cosine_is_the_mean_positionwise_cosine():
    a, b = torch.randn(3, 10, 8), torch.randn(3, 10, 8)
    m = SemanticCosine()
    m.update(a[:2], b[:2])
    m.update(a[2:], b[2:])
    assert torch.isclose(m.compute(), F.cosine_similarity(a, b, dim=-1).double().mean())
    m2 = SemanticCosine()
    m2.update(a, a)
    assert torch.isclose(m2.compute(), torch.tensor(1.0, dtype=torch.float64))
