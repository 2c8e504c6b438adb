import pytest
from pydantic import ValidationError

from pipelines.annotate.prompts import PromptConfig, SelectionConfig


def test_defaults_follow_the_papers():
    assert PromptConfig().mask_counts == [1, 2] and PromptConfig().mask_token == "[MASK]"
    assert SelectionConfig().fallback == "label_text" and SelectionConfig().threshold == 0.0


@pytest.mark.parametrize(
    "model, data, message",
    [
        (PromptConfig, {"mask_counts": []}, "mask_counts"),
        (PromptConfig, {"mask_counts": [0, 1]}, "mask_counts"),
        (PromptConfig, {"mask_tokn": "<mask>"}, "did you mean 'mask_token'"),
        (SelectionConfig, {"fallback": "caption"}, "fallback"),
        (SelectionConfig, {"threshold": "nan"}, "threshold"),
    ],
)
def test_bad_values_are_rejected(model, data, message):
    with pytest.raises(ValidationError, match=message):
        model.model_validate(data)
