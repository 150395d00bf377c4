"""Per-network training recipes (issue 30): the demo, its tickets and its energy search train the SNN by the SNN
recipe; the recipes are valid settings; Adam keeps pruned weights at zero (tests/test_masks.py covers the mask
after every step)."""

from __future__ import annotations

from slt_deploy.config import ANN_RECIPE, SNN_RECIPE, TrainConfig
from slt_deploy.demo import demo_config, demo_energy_config


def test_the_demo_and_its_energy_search_train_by_the_snn_recipe():
    assert demo_config().train == SNN_RECIPE
    assert demo_energy_config().train == SNN_RECIPE
    assert demo_config(quick=True).train == SNN_RECIPE.replace(epochs=2)
    # measured in benchmarks/snn_recipe.py (RESULTS.md section 16): Adam, lr 5e-3, cosine, 5 epochs
    assert (SNN_RECIPE.optimizer, SNN_RECIPE.lr, SNN_RECIPE.schedule, SNN_RECIPE.epochs) == ("adam", 5e-3, "cosine", 5)


def test_the_recipes_are_ordinary_settings_and_round_trip():
    for recipe in (SNN_RECIPE, ANN_RECIPE):
        assert TrainConfig.from_dict(recipe.to_dict()) == recipe
