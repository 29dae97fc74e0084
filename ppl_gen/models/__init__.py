"""The model zoo. Every entry of ``MODELS`` is a :class:`GenerativeModel` class with a
``from_dataset`` constructor; one contract test runs over all of them."""

from __future__ import annotations

import functools

from ..registry import Registry
from .aae import AdversarialAutoencoder, energy_distance
from .autoregressive import FVSBN, MADE, NADE, IndependentBernoulli, MarkovChain, PixelCNN
from .base import GenerativeModel
from .ddpm import DDPM
from .eight_schools import EightSchools
from .flows import NormalizingFlow
from .gan import GAN, GAN_OBJECTIVES
from .linear_gaussian import PPCA, FactorAnalysis, ppca_closed_form
from .mixture import GaussianMixture
from .mixture_outputs import MADEMoG
from .regression import BayesianLinearRegression, BayesianLogisticRegression
from .vae import VAE, ConditionalVAE

__all__ = ["MODELS", "DEFAULT_DATASETS", "GenerativeModel", "EightSchools",
           "BayesianLinearRegression", "BayesianLogisticRegression", "GaussianMixture", "PPCA",
           "FactorAnalysis", "ppca_closed_form", "build_model", "IndependentBernoulli",
           "MarkovChain", "FVSBN", "NADE", "MADE", "PixelCNN", "NormalizingFlow", "MADEMoG",
           "VAE", "ConditionalVAE", "AdversarialAutoencoder", "energy_distance",
           "model_options", "GAN", "GAN_OBJECTIVES", "DDPM"]

MODELS: Registry[type[GenerativeModel]] = Registry("model")


def _variant(name: str, description: str, cls: type[GenerativeModel], **fixed: object) -> None:
    """Register ``cls`` with some constructor arguments fixed; ``from_dataset`` keeps them."""
    MODELS.register(name, description)(functools.partial(cls, **fixed))
    MODELS[name].from_dataset = (  # type: ignore[attr-defined]
        lambda ds, **kw: cls.from_dataset(ds, **fixed, **kw))

MODELS.register("eight_schools", "hierarchical normal model, non-centered (Rubin 1981)")(
    EightSchools)
_variant("eight_schools_centered",
         "hierarchical normal model, centered (the funnel: NUTS diverges)", EightSchools,
         centered=True)
MODELS.register("linear_regression", "Bayesian linear regression (known noise: conjugate)")(
    BayesianLinearRegression)
MODELS.register("logistic_regression", "Bayesian logistic regression")(
    BayesianLogisticRegression)
MODELS.register("gmm", "Gaussian mixture, point parameters (EM, SVI with enumerated z)")(
    GaussianMixture)
_variant("bayesian_gmm", "Gaussian mixture with priors, z marginalised (NUTS, VI)",
         GaussianMixture, priors=True)
MODELS.register("ppca", "probabilistic PCA (Tipping & Bishop 1999)")(PPCA)
MODELS.register("factor_analysis", "factor analysis, diagonal noise")(FactorAnalysis)
MODELS.register("independent_bernoulli", "independent binary pixels (D parameters)")(
    IndependentBernoulli)
MODELS.register("markov_chain", "first-order Markov chain over pixels (2D - 1 parameters)")(
    MarkovChain)
MODELS.register("fvsbn", "fully visible sigmoid belief network (Frey 1998)")(FVSBN)
MODELS.register("nade", "neural autoregressive density estimator (Larochelle & Murray 2011)")(
    NADE)
MODELS.register("made", "masked autoencoder for distribution estimation (Germain et al. 2015)")(
    MADE)

MODELS.register("pixelcnn", "PixelCNN: masked convolutions A/B (van den Oord et al. 2016)")(
    PixelCNN)
MODELS.register("made_mog", "MADE with mixture-of-Gaussians conditionals, real-valued data")(
    MADEMoG)
for _flow, _description in (
        ("realnvp", "RealNVP: affine coupling flow (Dinh et al. 2017)"),
        ("maf", "masked autoregressive flow (Papamakarios et al. 2017)"),
        ("nsf", "neural spline flow, rational-quadratic coupling (Durkan et al. 2019)")):
    _variant(_flow, _description, NormalizingFlow, flow=_flow)

MODELS.register("vae", "variational autoencoder, MLP encoder/decoder (Kingma & Welling 2014)")(
    VAE)
_variant("conv_vae", "variational autoencoder, convolutional encoder/decoder", VAE,
         architecture="conv")
MODELS.register("cvae", "conditional VAE p(x | y); classifies by Bayes' rule, rejects outliers")(
    ConditionalVAE)
MODELS.register("aae", "adversarial autoencoder: codes matched to any sampleable prior "
                "(Makhzani et al. 2016)")(AdversarialAutoencoder)
_variant("autoencoder", "plain autoencoder (the AAE without its discriminator): not a "
         "generative model", AdversarialAutoencoder, adversarial=False)

MODELS.register("gan", "GAN, non-saturating generator loss, MLP networks (Goodfellow et al. "
                "2014)")(GAN)
_variant("minimax_gan", "GAN with the original minimax (saturating) generator loss", GAN,
         objective="minimax")
_variant("lsgan", "least-squares GAN (Mao et al. 2017)", GAN, objective="least_squares")
_variant("wgan", "Wasserstein GAN, weight clipping (Arjovsky et al. 2017)", GAN,
         objective="wgan")
_variant("wgan_gp", "Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)", GAN,
         objective="wgan_gp")
_variant("dcgan", "deep convolutional GAN (Radford et al. 2016), images", GAN,
         architecture="dcgan")
_variant("cgan", "class-conditional GAN: labels into G and D (Mirza & Osindero 2014)", GAN,
         conditional=True)
_variant("conditional_dcgan", "class-conditional DCGAN, images", GAN, architecture="dcgan",
         conditional=True)

MODELS.register("ddpm", "denoising diffusion (Ho et al. 2020): the fixed forward chain as the "
                "guide, the learned reverse chain as the model")(DDPM)

#: The dataset each model is demonstrated on (``ppl-gen fit MODEL`` without ``--data``).
DEFAULT_DATASETS = {
    "eight_schools": "eight_schools", "eight_schools_centered": "eight_schools",
    "linear_regression": "diabetes", "logistic_regression": "breast_cancer",
    "gmm": "gaussian_mixture", "bayesian_gmm": "gaussian_mixture", "ppca": "digits",
    "factor_analysis": "digits", "independent_bernoulli": "mnist", "markov_chain": "mnist",
    "fvsbn": "mnist", "nade": "mnist", "made": "mnist", "realnvp": "two_moons",
    "maf": "two_moons", "nsf": "two_moons", "made_mog": "two_moons", "pixelcnn": "mnist",
    "vae": "mnist", "conv_vae": "mnist", "cvae": "mnist", "aae": "mnist",
    "autoencoder": "mnist",
    "gan": "gaussian_ring", "minimax_gan": "gaussian_ring", "lsgan": "gaussian_ring",
    "wgan": "gaussian_ring", "wgan_gp": "gaussian_grid", "dcgan": "digits",
    "cgan": "two_moons", "conditional_dcgan": "digits", "ddpm": "gaussian_ring",
}


def model_options(name: str) -> list[str]:
    """The constructor options of registered model ``name`` (options a variant fixes
    excluded; ``**kwargs`` followed up the class hierarchy)."""
    import inspect

    entry = MODELS[name]
    cls = entry.func if isinstance(entry, functools.partial) else entry
    fixed = set(entry.keywords) if isinstance(entry, functools.partial) else set()
    names: list[str] = []
    signatures = [inspect.signature(cls.from_dataset)]
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is GenerativeModel:
            continue
        signatures.append(inspect.signature(vars(klass)["__init__"]))
        if not any(p.kind is p.VAR_KEYWORD for p in signatures[-1].parameters.values()):
            break
    for signature in signatures:
        for n, p in signature.parameters.items():
            if n not in ("self", "cls", "dataset") and n not in fixed and n not in names \
                    and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                names.append(n)
    return names


def build_model(name: str, dataset: object, **kwargs: object) -> GenerativeModel:
    """``MODELS[name].from_dataset(dataset, **kwargs)`` with the registry's error on typos
    and on option names the model does not take."""
    MODELS[name]
    valid = model_options(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; its "
                         f"options are: {', '.join(valid) or '(none)'}")
    return MODELS[name].from_dataset(dataset, **kwargs)
