import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import ppl_gen
from ppl_gen.models import FVSBN, MADE, NADE, IndependentBernoulli, MarkovChain, PixelCNN
from ppl_gen.models.autoregressive import full_joint_parameters


def _models(dim):
    return {
        "independent": IndependentBernoulli(dim),
        "markov": MarkovChain(dim),
        "fvsbn": FVSBN(dim),
        "nade": NADE(dim, hidden_dim=7),
        "made": MADE(dim, hidden_dims=(16, 16)),
        "made_ensemble": MADE(dim, hidden_dims=(16,), num_masks=3, order_agnostic=True),
        # A 2 x (dim / 2) image; 3 x 3 kernels so that the mask, not the border, decides.
        "pixelcnn": PixelCNN(dim, image_shape=(2, dim // 2), channels=6, num_layers=3,
                             first_kernel=3),
    }


def _randomised(model, seed=0):
    """Random, non-trivial parameters (zeros would make many checks vacuous)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return model.double().eval()


def _all_binary(dim):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=dim)), dtype=torch.float64)


@pytest.mark.parametrize("name", list(_models(2)))
def test_probabilities_sum_to_one_over_all_images(name):
    dim = 10
    model = _randomised(_models(dim)[name])
    total = model.log_prob(_all_binary(dim)).detach().exp().sum()
    assert abs(float(total) - 1) < 1e-5


@pytest.mark.parametrize("name", ["markov", "fvsbn", "nade", "made", "made_ensemble",
                                  "pixelcnn"])
def test_logits_are_strictly_autoregressive(name):
    """d logit_i / d x_j = 0 unless j comes before i in the model's ordering."""
    dim = 8
    model = _randomised(_models(dim)[name], seed=1)
    num_orderings = getattr(model, "num_masks", 1)
    for k in range(num_orderings):
        if num_orderings > 1:
            model.use_mask(k)
        x = torch.rand(dim, dtype=torch.float64)
        jacobian = torch.autograd.functional.jacobian(lambda v: model.logits(v[None])[0], x)
        order = model.ordering
        permuted = jacobian[order][:, order]  # rows/cols in the model's ordering
        assert torch.all(torch.triu(permuted) == 0), f"mask set {k}"
        assert torch.tril(permuted, -1).abs().sum() > 0 or name == "markov"


@pytest.mark.parametrize("name", list(_models(2)))
def test_sample_frequencies_match_the_density(name):
    """Chi-square goodness of fit on all 16 images of a 4-pixel model, 20,000 draws."""
    dim, num = 4, 20_000
    model = _randomised(_models(dim)[name], seed=2)
    torch.manual_seed(0)
    draws = model.sample(num)
    codes = (draws @ (2.0 ** torch.arange(dim - 1, -1, -1, dtype=torch.float64))).long()
    observed = torch.bincount(codes, minlength=2 ** dim).numpy()
    probs = model.log_prob(_all_binary(dim)).exp().detach().numpy()
    _, p_value = chisquare(observed, probs * num)
    assert p_value > 1e-3, (observed, probs * num)


def test_parameter_counts_are_the_seeds():
    dim, hidden = 784, 500
    assert IndependentBernoulli(dim).num_parameters() == dim
    assert MarkovChain(dim).num_parameters() == 2 * dim - 1
    assert FVSBN(dim).num_parameters() == dim + dim * (dim - 1) // 2
    assert NADE(dim, hidden).num_parameters() == 2 * dim * hidden + dim + hidden
    assert full_joint_parameters(4) == 15
    made = MADE(dim, (hidden,))
    assert made.num_parameters() < sum(p.numel() for p in made.parameters())


def test_nade_is_the_seeds_formula():
    """Oracle: the seed's p(x_i | x_<i) = sigmoid(alpha_i . h_i + b_i),
    h_i = sigmoid(W_<i x_<i + c), evaluated by a literal loop over i."""
    dim = 6
    model = _randomised(NADE(dim, hidden_dim=5), seed=3)
    x = torch.bernoulli(torch.full((3, dim), 0.5, dtype=torch.float64))
    W, c = model.weight, model.hidden_bias
    alpha, b = model.out_weight, model.bias
    expected = torch.zeros(3, dtype=torch.float64)
    for i in range(dim):
        h = torch.sigmoid(x[:, :i] @ W[:, :i].T + c)
        p = torch.sigmoid(h @ alpha[i] + b[i])
        expected += torch.where(x[:, i] == 1, p, 1 - p).log()
    torch.testing.assert_close(model.log_prob(x), expected)


def test_markov_chain_svi_reaches_the_count_mle():
    """The maximum-likelihood Markov chain has closed-form conditionals (count ratios):
    SVI with an empty guide must reach its log-likelihood."""
    data = ppl_gen.load_dataset("digits", binarize=True, dtype=torch.float64)
    x = data["x"].numpy()
    eps = 1e-12
    p_first = x[:, 0].mean()
    ll = np.sum(x[:, 0] * np.log(p_first + eps) + (1 - x[:, 0]) * np.log(1 - p_first + eps))
    for i in range(1, x.shape[1]):
        for prev in (0, 1):
            rows = x[:, i - 1] == prev
            if rows.any():
                p = x[rows, i].mean()
                ll += np.sum(x[rows, i] * np.log(p + eps) + (1 - x[rows, i]) *
                             np.log(1 - p + eps))
    closed_form = ll / len(x)
    model = ppl_gen.MODELS["markov_chain"].from_dataset(data).double()
    ppl_gen.fit(model, data, engine="svi", num_steps=1500, learning_rate=0.1,
                final_learning_rate=1e-3, device="cpu")
    with torch.no_grad():
        fitted = float(model.log_prob(data["x"]).mean())
    # Some conditionals are deterministic in the data (always-off border pixels): their MLE
    # logit is infinite, which Adam approaches only slowly; 0.05 nats/image of 64 pixels.
    assert closed_form - 0.05 < fitted <= closed_form + 1e-6


def test_binary_data_required():
    with pytest.raises(ValueError, match="models binary data.*binarize=True"):
        ppl_gen.MODELS["nade"].from_dataset(ppl_gen.load_dataset("digits"))
    with pytest.raises(ValueError, match="num_masks must be >= 1"):
        MADE(4, num_masks=0)
    assert math.isfinite(float(NADE(3, 2).log_prob(torch.ones(1, 3))))


def test_bias_initialisation_is_the_independent_mle():
    """For independent pixels the marginal log-odds are the maximum-likelihood solution:
    the log-likelihood equals sum_i [m_i log m_i + (1 - m_i) log(1 - m_i)] per image."""
    data = ppl_gen.load_dataset("digits", binarize=True, dtype=torch.float64)
    x = data["x"]
    model = IndependentBernoulli(64).double()
    model.initialize_bias(x, eps=1e-9)
    m = x.mean(0).clamp(1e-9, 1 - 1e-9)
    expected = (m * m.log() + (1 - m) * (1 - m).log()).sum()
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x).mean(), expected)
    for cls in (MarkovChain, FVSBN, NADE, MADE, PixelCNN):  # every model has the hook
        other = cls(64).double()
        other.initialize_bias(x)
        assert torch.isfinite(other.output_bias()).all()


def test_pixelcnn_masks_and_shape_errors():
    """Type A hides the centre pixel, type B shows it; nothing below or to the right."""
    from ppl_gen.nn import MaskedConv2d

    a = MaskedConv2d(1, 1, 3, "A").mask[0, 0]
    b = MaskedConv2d(1, 1, 3, "B").mask[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="dim=10 is not a square"):
        PixelCNN(10)
    with pytest.raises(ValueError, match="unknown mask_type 'C'"):
        MaskedConv2d(1, 1, 3, "C")
    assert PixelCNN(784).num_parameters() < FVSBN(784).num_parameters()
