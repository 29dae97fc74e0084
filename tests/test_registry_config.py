import pytest

import ppl_gen
from ppl_gen.config import EMConfig, MCMCConfig, SVIConfig, config_from_dict
from ppl_gen.registry import Registry, UnknownNameError


def test_registry_lists_valid_names_on_typo():
    registry = Registry("widget")
    registry.register("alpha", "first")(1)
    registry.register("beta")(2)
    with pytest.raises(UnknownNameError, match="unknown widget 'gamma'; valid widgets are: "
                                               "alpha, beta"):
        registry["gamma"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register("alpha")(3)
    assert registry.descriptions["alpha"] == "first"


@pytest.mark.parametrize("registry,name", [(ppl_gen.MODELS, "no_such_model"),
                                           (ppl_gen.DATASETS, "cifar"),
                                           (ppl_gen.ENGINES, "nut")])
def test_public_registries_reject_unknown(registry, name):
    with pytest.raises(KeyError, match="valid .* are:"):
        registry[name]


@pytest.mark.parametrize("cls,field,value,message", [
    (MCMCConfig, "num_chains", 0, "num_chains must be an integer >= 1"),
    (MCMCConfig, "num_samples", -5, "num_samples must be an integer >= 1"),
    (MCMCConfig, "target_accept_prob", 1.0, "strictly between 0 and 1"),
    (MCMCConfig, "kernel", "gibbs", "unknown kernel 'gibbs'; valid values are: nuts, hmc"),
    (SVIConfig, "learning_rate", -0.1, "learning_rate must be a finite number > 0"),
    (SVIConfig, "learning_rate", float("nan"), "learning_rate must be a finite number"),
    (SVIConfig, "num_steps", 2.5, "num_steps must be an integer"),
    (SVIConfig, "loss", "elbo", "unknown loss 'elbo'"),
    (SVIConfig, "guide", "flow", "unknown guide 'flow'"),
    (SVIConfig, "batch_size", 0, "batch_size must be 'auto', None or an integer >= 1"),
    (EMConfig, "tol", -1.0, "tol must be a finite number >= 0"),
    (EMConfig, "max_iter", 0, "max_iter must be an integer >= 1"),
])
def test_impossible_settings_fail_with_the_field_name(cls, field, value, message):
    with pytest.raises(ValueError, match=message):
        cls(**{field: value})


def test_iwae_needs_several_particles():
    with pytest.raises(ValueError, match="needs num_particles >= 2"):
        SVIConfig(loss="iwae", num_particles=1)


def test_config_from_dict_rejects_unknown_option():
    with pytest.raises(ValueError, match="unknown nuts option.*num_step"):
        config_from_dict("nuts", {"num_step": 10})
    assert config_from_dict("hmc", {}).kernel == "hmc"


def test_configs_are_frozen():
    config = SVIConfig()
    with pytest.raises(AttributeError):
        config.num_steps = 5
